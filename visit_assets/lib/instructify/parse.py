"""Parsing model replies: `Question:` / `Answer:` blocks, and strict True/False verdicts.

Malformed output is a status, never an exception. `parse_qa` accepts the variants models write:
any case, numbering ("Question 1:", "Q2:", "1. Question:", "Question #3:"), markdown bold or
italics around the label, list markers, "Q:"/"A:", "Human:"/"GPT:" and "User:"/"Assistant:",
and a question and its answer on one line ("... ? Answer: ..."). A label needs its colon, so an
option line such as "A) red" stays part of the question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OK = "ok"  # pairs found, nothing odd
PARTIAL = "partial"  # pairs found, plus dangling or placeholder blocks (listed in problems)
NO_PAIRS = "no_pairs"  # labels found but no complete question + answer pair
UNPARSEABLE = "unparseable"  # text without any Question/Answer label
EMPTY = "empty"  # blank reply
PARSE_STATUSES = (OK, PARTIAL, NO_PAIRS, UNPARSEABLE, EMPTY)

_Q_WORDS = {"question": "q", "q": "q", "human": "q", "user": "q",
            "answer": "a", "a": "a", "gpt": "a", "assistant": "a"}
_DECOR = r"[*_`#>\s-]*"
_LINE_LABEL = re.compile(
    r"^\s*(?:[-*+>]\s+)?(?:\(?\d{1,2}[.)]\s*)?" + _DECOR
    + r"(?P<label>question|answer|human|user|gpt|assistant|q|a)\s*(?:#?\s*\d{1,2})?\s*[*_]*\s*[:：]\s*[*_]*\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
# A label inside a line: an answer right after a question mark, or a new question after a sentence.
_INLINE_ANSWER = re.compile(r"(?<=\?)\s*(?:\*\*)?(?:Answer|A)\s*(?:\d{1,2})?\s*(?:\*\*)?\s*:\s*(?:\*\*)?")
_INLINE_QUESTION = re.compile(r"(?<=[.!?])\s+(?:\*\*)?(?:Question|Q)\s*(?:\d{1,2})?\s*(?:\*\*)?\s*:\s*(?:\*\*)?")
_PLACEHOLDER = re.compile(r"^<[^<>]*>$|^\.\.\.$")
_BOLD_UNDERSCORE = re.compile(r"(?<!_)__(?!_)")
_SEPARATOR = re.compile(r"^\s*(?:-{3,}|\*{3,}|_{3,}|={3,})\s*$")


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str


@dataclass
class ParseResult:
    pairs: list[QAPair]
    status: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.pairs)


def _clean(text: str) -> str:
    # bold markers go; a run of three or more underscores is a fill-in-the-blank's blank and stays
    lines = [ln.strip() for ln in _BOLD_UNDERSCORE.sub("", text.replace("**", "")).split("\n")]
    lines = [ln for ln in lines if not _SEPARATOR.match(ln)]
    out = "\n".join(lines).strip()
    out = re.sub(r"\n{3,}", "\n\n", out)
    if len(out) >= 2 and out[0] == out[-1] and out[0] in "\"'":
        out = out[1:-1].strip()
    return out


def _segments(text: str) -> tuple[list[list[str]], bool]:
    """[[kind, text], ...] in order, and whether any label was seen."""
    segs: list[list[str]] = []
    for line in text.splitlines():
        m = _LINE_LABEL.match(line)
        if m:
            segs.append([_Q_WORDS[m.group("label").lower()], m.group("rest")])
        elif segs:
            segs[-1][1] += "\n" + line
        # text before the first label is a preamble: ignored
    found = bool(segs)
    split: list[list[str]] = []
    for kind, body in segs:
        parts: list[list[str]] = [[kind, body]]
        if kind == "q":
            m = _INLINE_ANSWER.search(body)
            if m:
                parts = [["q", body[: m.start()]], ["a", body[m.end():]]]
        last = parts[-1]
        if last[0] == "a":
            pieces = _INLINE_QUESTION.split(last[1])
            if len(pieces) > 1:
                parts[-1] = ["a", pieces[0]]
                for piece in pieces[1:]:
                    m = _INLINE_ANSWER.search(piece)
                    parts += [["q", piece[: m.start()]], ["a", piece[m.end():]]] if m else [["q", piece]]
        split.extend(parts)
    return split, found


def parse_qa(text: str | None) -> ParseResult:
    """Question/answer pairs in order; problems list what was skipped and why."""
    if not text or not text.strip():
        return ParseResult([], EMPTY, ["blank reply"])
    segs, found = _segments(text)
    if not found:
        return ParseResult([], UNPARSEABLE, ["no Question:/Answer: labels"])
    pairs: list[QAPair] = []
    problems: list[str] = []
    pending: str | None = None
    for kind, body in segs:
        body = _clean(body)
        if kind == "q":
            if pending is not None:
                problems.append(f"question without answer: {pending[:60]!r}")
            pending = body
            continue
        if pending is None:
            problems.append(f"answer without question: {body[:60]!r}")
            continue
        q, pending = pending, None
        if not q or not body:
            problems.append("empty question or answer")
        elif _PLACEHOLDER.match(q) or _PLACEHOLDER.match(body):
            problems.append(f"template placeholder copied: {q[:40]!r}")
        else:
            pairs.append(QAPair(q, body))
    if pending is not None:
        problems.append(f"question without answer: {pending[:60]!r}")
    if not pairs:
        return ParseResult([], NO_PAIRS, problems)
    return ParseResult(pairs, PARTIAL if problems else OK, problems)


# ---------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------

_VERDICT_PREFIX = re.compile(r"^(?:verdict|answer|result|judgement|judgment|output)\s*[:：-]\s*", re.IGNORECASE)
_VERDICT = re.compile(r"^(true|false)(?![a-z0-9])", re.IGNORECASE)
_STRIP = " \t*_`#>\"'[]().,:;!-"


def parse_verdict(text: str | None) -> bool | None:
    """True / False from the first non-blank line, or None when it is not plainly one of them.

    Strict: the line must start with the word true or false (after markdown, quotes, brackets or
    a "Verdict:" label) and must not contain the other word ("True or False" is None). Yes/no,
    "correct", "It is true" are None: the verifier was asked for True or False.
    """
    if not text:
        return None
    line = next((ln for ln in text.splitlines() if ln.strip(_STRIP)), "")
    line = line.strip(_STRIP)
    line = _VERDICT_PREFIX.sub("", line).strip(_STRIP)
    m = _VERDICT.match(line)
    if not m:
        return None
    word = m.group(1).lower()
    other = "false" if word == "true" else "true"
    if re.search(rf"(?<![a-z]){other}(?![a-z])", line, re.IGNORECASE):
        return None
    return word == "true"


_FACTS_LINE = re.compile(r"(?:supporting\s+)?facts?\s*(?:used|numbers?)?\s*[:：]\s*(?P<rest>.*)", re.IGNORECASE)


def parse_fact_refs(text: str | None, n_facts: int) -> list[int] | None:
    """Fact numbers cited on a "Facts: 1, 3" line (1-based, in range, sorted, unique).

    None when there is no such line or it cites nothing in range ("Facts: none" gives []).
    """
    if not text:
        return None
    for line in text.splitlines():
        m = _FACTS_LINE.search(line.replace("**", ""))
        if not m:
            continue
        rest = m.group("rest")
        if re.match(r"\s*(?:none|-|n/a)\b", rest, re.IGNORECASE):
            return []
        nums = sorted({int(x) for x in re.findall(r"\d+", rest) if 1 <= int(x) <= n_facts})
        return nums or None
    return None

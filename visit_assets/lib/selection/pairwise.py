"""Pairwise LLM judge for evaluating a selection (InstructionGPT-4 section 5, "Win-Tie-Lose").

Each item is judged twice, with the two answers in both orders, because LLM judges favour a
position. `win_tie_lose` combines the two verdicts per item from the point of view of the model
whose answer is "A" in the first order (ours):

* rule="paper" (default; InstructionGPT-4 sec. 5.2): win = two wins, or a win and a tie;
  tie = two ties, or a win and a loss; lose = two losses, or a loss and a tie.
  Equivalently: +1 per win, -1 per loss, and the sign of the sum.
* rule="strict" (MM-Instruct's benchmark, shared/docs/reference.md): win or lose only when both
  orders agree on a winner; anything else is a tie.

A verdict that did not parse (None) makes the item "invalid": it is counted, never folded into a
tie.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, get_args

from visit_assets.lib.prompts import load_prompt, prompt_dir

Preference = Literal["A", "B", "tie"]

# The judge prompts: visit_assets/prompts/selection/pairwise.yaml and pairwise_example.yaml. Edit
# the wording there and bump the file's `version`. The versions are kept strings here, as before.
PAIRWISE_PROMPT = load_prompt("pairwise", prompt_dir("selection"))
PAIRWISE_PROMPT_ID: str = PAIRWISE_PROMPT.id
PAIRWISE_PROMPT_VERSION: str = str(PAIRWISE_PROMPT.version)


def _context_block(image_context: str | None) -> str:
    return f"Description of the image:\n{image_context.strip()}\n\n" if image_context else ""


def pairwise_messages(instruction: str, answer_a: str, answer_b: str, *,
                      image_context: str | None = None) -> list[dict[str, str]]:
    """Chat messages asking which of two answers is better (prompt PAIRWISE_PROMPT_ID v PAIRWISE_PROMPT_VERSION).

    The judge is text-only; `image_context` (e.g. a reference description of the image, as in
    LLaVA-Bench) is shown before the instruction when given.
    """
    # strip=False: the context block ends in a blank line that must stay; the rest is stripped here
    return PAIRWISE_PROMPT.messages({
        "context": _context_block(image_context), "instruction": instruction.strip(),
        "answer_a": answer_a.strip(), "answer_b": answer_b.strip()}, strip=False)


EXAMPLE_PROMPT = load_prompt("pairwise_example", prompt_dir("selection"))
EXAMPLE_PROMPT_ID: str = EXAMPLE_PROMPT.id
EXAMPLE_PROMPT_VERSION: str = str(EXAMPLE_PROMPT.version)


def example_pair_messages(instruction_a: str, answer_a: str, instruction_b: str, answer_b: str, *,
                          image_context: str | None = None) -> list[dict[str, str]]:
    """Like `pairwise_messages` for two examples whose instructions differ (e.g. a selected
    conversation against a random other one of the same image); same verdict format."""
    return EXAMPLE_PROMPT.messages({
        "context": _context_block(image_context), "instruction_a": instruction_a.strip(), "answer_a": answer_a.strip(),
        "instruction_b": instruction_b.strip(), "answer_b": answer_b.strip()}, strip=False)


_VERDICT_RE = re.compile(
    r"\bverdict\s*(?:is\s+)?[:=-]?\s*(?:(?:answer|response|assistant)\s+)?((?-i:A|B)|(?:a\s+)?tie)\b", re.I)
_BRACKETED_RE = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.I)  # "[[A]]" style; C = tie
_BETTER_RE = re.compile(r"\b(?:answer|response|assistant)\s+((?-i:A|B))\s+is\s+(?:better|superior|preferable|the\s+better)",
                        re.I)
_TIE_WORDS = re.compile(r"^(?:tie|a\s+tie|draw|equal|equally\s+good|both\s+equally\s+good|same)$", re.I)
_EMPHASIS_RE = re.compile(r"[*_`#]")
_MARKUP_RE = re.compile(r"[>\"'.!]")


def _norm(token: str) -> Preference:
    t = token.strip()
    if t.upper() in ("A", "B"):
        return t.upper()  # type: ignore[return-value]
    return "tie"


def parse_preference(text: str | None) -> Preference | None:
    """"A", "B", "tie", or None when the reply names no single verdict.

    Accepted, in this order: "Verdict: A|B|tie" lines (the asked format; if they disagree -> None);
    "[[A]]"/"[[B]]"/"[[C]]" (C = tie); a reply that is only "A", "B" or a tie word; one
    "Answer A is better" statement. Anything else (empty, both answers claimed better, prose
    without a verdict) is None, never a default.
    """
    if text is None or not text.strip():
        return None
    text = _EMPHASIS_RE.sub("", text)
    found: set[str] = {_norm(m.group(1)) for m in _VERDICT_RE.finditer(text)}
    if not found:
        found = {_norm("tie" if m.group(1).upper() == "C" else m.group(1)) for m in _BRACKETED_RE.finditer(text)}
    if not found:
        bare = _MARKUP_RE.sub("", text).strip()
        bare = re.sub(r"^(?:answer|response|assistant)\s+", "", bare, flags=re.I).strip()
        if bare in ("A", "B"):
            return bare  # type: ignore[return-value]
        if _TIE_WORDS.match(bare):
            return "tie"
    if not found:
        found = {m.group(1).upper() for m in _BETTER_RE.finditer(text)}
    if len(found) != 1:
        return None
    return found.pop()  # type: ignore[return-value]


WIN, TIE, LOSE, INVALID = "win", "tie", "lose", "invalid"
Rule = Literal["paper", "strict"]  # EvaluationConfig.rule
RULES: tuple[str, ...] = get_args(Rule)


def _points(verdict: str | None, ours: str) -> int | None:
    if verdict is None:
        return None
    if verdict == "tie":
        return 0
    if verdict not in ("A", "B"):
        raise ValueError(f"a verdict must be 'A', 'B', 'tie' or None, got {verdict!r}")
    return 1 if verdict == ours else -1


def win_tie_lose(verdicts_ab: Sequence[str | None], verdicts_ba: Sequence[str | None],
                 rule: str = "paper") -> tuple[list[str], dict[str, int | float]]:
    """Combine both answer orders per item: (outcomes, counts).

    verdicts_ab[i]: the judge's verdict with our answer shown as A; verdicts_ba[i]: with our answer
    shown as B (so "B" there is a win for us). outcomes[i] is "win" | "tie" | "lose" | "invalid";
    counts has n, win, tie, lose, invalid and win_or_tie_rate (over the valid items; NaN if none).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if len(verdicts_ab) != len(verdicts_ba):
        raise ValueError(f"{len(verdicts_ab)} verdicts in order AB but {len(verdicts_ba)} in order BA")
    outcomes: list[str] = []
    for ab, ba in zip(verdicts_ab, verdicts_ba, strict=True):
        p1, p2 = _points(ab, "A"), _points(ba, "B")
        if p1 is None or p2 is None:
            outcomes.append(INVALID)
        elif rule == "paper":
            total = p1 + p2
            outcomes.append(WIN if total > 0 else LOSE if total < 0 else TIE)
        else:
            outcomes.append(WIN if p1 == p2 == 1 else LOSE if p1 == p2 == -1 else TIE)
    counts: dict[str, int | float] = {"n": len(outcomes)}
    for name in (WIN, TIE, LOSE, INVALID):
        counts[name] = outcomes.count(name)
    valid = counts[WIN] + counts[TIE] + counts[LOSE]
    counts["win_or_tie_rate"] = (counts[WIN] + counts[TIE]) / valid if valid else float("nan")
    return outcomes, counts

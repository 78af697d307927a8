"""Stage 5, filters: rule checks on generated answers, the strict yes/no parser for the LLM fit
check, and the LLaVA conversation format (MM-Instruct section 2.3).

Every rule takes the answer text (and the finish reason where relevant) and returns a reason
string when the answer must be dropped, or None. `check_answer` runs the rules of one recipe
(`RULES_BY_RECIPE`) in order and returns the first reason; `check_conversation` does it for every
answer of a conversation. Thresholds are keyword arguments so a run can record the values it used.

Which rules apply to which recipe (`RULES_BY_RECIPE`, the one place that says so):
- MM-Instruct ("mm-instruct") answers get every rule: its paper drops incomplete answers and
  invalid repeat patterns (section 2.3); the 15-word floor, the refusal and the source-leak rules
  are this project's reading of "low-quality instances" for free-text answers to an instruction.
- Instructify ("instructify") verifies every QA pair against the facts and drops the cut-off last
  pair of a truncated reply itself (instructify/sampling.py); the reference implementation applies
  no filter after that. Several of its types ask for short answers ("B) red", "No, it is brown.",
  a one-line caption), so it gets no length floor and no mid-sentence rule, only generic hygiene:
  a loop, a refusal, or a mention of the text it was given (the facts, captions, numbered fact
  references), which its prompts forbid because it breaks the "looking at the image" setting.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

# reasons
TRUNCATED = "truncated"  # stopped at max_tokens
MID_SENTENCE = "ends_mid_sentence"
REPETITION = "repetition"
TOO_SHORT = "too_short"
REFUSAL = "refusal"
SOURCE_LEAK = "mentions_source_text"  # talks about "the description" etc.: leaks the text-only setting
EMPTY = "empty"
REASONS = (EMPTY, TRUNCATED, MID_SENTENCE, REPETITION, TOO_SHORT, REFUSAL, SOURCE_LEAK)

MIN_WORDS = 15
NGRAM = 4  # loop detection works on word 4-grams
MAX_NGRAM_REPEATS = 4  # one 4-gram this many times = a loop
MAX_DUPLICATE_NGRAM_SHARE = 0.35  # or this share of all 4-grams are repeats of earlier ones
MAX_SAME_WORD_RUN = 4  # "the the the the"
MAX_SAME_LINE = 3  # the same non-trivial line this many times
MID_SENTENCE_MIN_WORDS = 8  # a final line this long without end punctuation is a cut-off sentence

_WORD = re.compile(r"[\w']+", re.UNICODE)
_END_OK = re.compile(r"""[.!?…)\]"'”’»*~]$""")
_DANGLING = {"a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "from", "by",
             "as", "that", "which", "who", "is", "are", "was", "were", "be", "its", "their", "his", "her",
             "my", "your", "our", "this", "these", "those", "into", "onto", "than", "because", "while", "if"}


def _is_symbol_end(ch: str) -> bool:
    """Emoji and other symbols are a fine ending for a social-media post."""
    return unicodedata.category(ch) in ("So", "Sk", "Sm")


def truncated(answer: str, finish_reason: str | None = None) -> str | None:
    """The model hit max_tokens, or the text stops mid-sentence.

    Mid-sentence: ends with , ; : - ( / &, or with a word that cannot end a sentence ("the",
    "and", ...), or its last line has MID_SENTENCE_MIN_WORDS+ words and no closing punctuation.
    Short last lines without punctuation (verse, list items, sign-offs) and final hashtags or
    emoji pass.
    """
    if finish_reason == "length":
        return TRUNCATED
    text = (answer or "").rstrip()
    # drop emoji variation selectors / joiners so "🏖️" ends on the symbol itself
    while text and unicodedata.category(text[-1]) in ("Mn", "Cf"):
        text = text[:-1].rstrip()
    if not text:
        return None
    last_line = text.splitlines()[-1].strip()
    last = text[-1]
    if last in ",;:-–—(/&":
        return MID_SENTENCE
    if _END_OK.search(text) or _is_symbol_end(last):
        return None
    words = _WORD.findall(last_line.lower())
    if words and last_line.split()[-1].startswith("#"):
        return None
    if words and words[-1] in _DANGLING:
        return MID_SENTENCE
    if len(words) >= MID_SENTENCE_MIN_WORDS:
        return MID_SENTENCE
    return None


def repetition(
    answer: str,
    *,
    n: int = NGRAM,
    max_repeats: int = MAX_NGRAM_REPEATS,
    max_share: float = MAX_DUPLICATE_NGRAM_SHARE,
    max_word_run: int = MAX_SAME_WORD_RUN,
    max_same_line: int = MAX_SAME_LINE,
) -> str | None:
    """Degenerate loops: a word n-gram repeated max_repeats+ times, a large share of repeated
    n-grams, the same word max_word_run+ times in a row, or the same line max_same_line+ times."""
    words = _WORD.findall((answer or "").lower())
    run = 1
    for a, b in zip(words, words[1:], strict=False):
        run = run + 1 if a == b else 1
        if run >= max_word_run:
            return REPETITION
    if len(words) >= n:
        grams = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
        total = sum(grams.values())
        if max(grams.values()) >= max_repeats:
            return REPETITION
        if total >= 20 and (total - len(grams)) / total > max_share:
            return REPETITION
    lines = Counter(" ".join(_WORD.findall(ln.lower())) for ln in (answer or "").splitlines())
    if any(c >= max_same_line for ln, c in lines.items() if len(ln.split()) >= 3):
        return REPETITION
    return None


def too_short(answer: str, *, min_words: int = MIN_WORDS) -> str | None:
    return TOO_SHORT if len(_WORD.findall(answer or "")) < min_words else None


_REFUSAL = re.compile(
    r"\bas an ai\b|\bas a (?:large )?language model\b|\bi(?:'m| am) (?:just )?an ai\b"
    r"|\bi(?:'m| am) sorry,? but\b|\bi apologi[sz]e,? but\b"
    r"|\bi (?:cannot|can't|can not|am unable to|am not able to|'m unable to|'m not able to"
    r"|do not have the ability to|don't have the ability to)\s+"
    r"(?:see|view|look at|access|process|analy[sz]e|describe|identify|determine|tell|provide|help(?!\s+but\b)"
    r"|assist|fulfil|fulfill|comply|complete|create|write|generate|answer|do that|do this|perform|interpret)\b"
    r"|\b(?:unable|not able) to (?:see|view|access) (?:the |this |any )?(?:image|picture|photo)",
    re.I,
)


def refusal(answer: str) -> str | None:
    """Refusal or AI boilerplate ("As an AI", "I cannot see the image", "I'm sorry, but").
    "I cannot" counts only before a refusal verb, so "I cannot wait to go back!" passes."""
    return REFUSAL if _REFUSAL.search((answer or "").replace("’", "'")) else None


_SOURCE = re.compile(
    r"\b(?:the|given|provided|original) (?:image |scene |text |detailed )?(?:description|descriptions|caption|captions)\b"
    r"|\b(?:the|this) (?:text|information|details?) (?:provided|given|above|below)\b"
    r"|\b(?:provided|given|above|following) (?:text|information|details|context)\b"
    r"|\bbased on (?:the|this) (?:text|information|details?|context)\b"
    r"|\b(?:as )?(?:described|mentioned|stated|listed) (?:above|in the (?:text|description|caption))\b"
    r"|\bknown facts\b|\bcoarse position\b"
    # Instructify's inputs: numbered facts ("[3]", "fact 3", "the facts") and box annotations
    # (not a bare "the facts": "the facts of the matter" is ordinary prose)
    r"|\b(?:given|provided|listed|numbered|above|following) facts\b|\b(?:according to|from|in) the facts\b"
    r"|\bthe facts (?:given|provided|listed|above|say|state|mention)\b|\bfacts? (?:no\.? ?|number |#)?\d+\b"
    r"|\[\d{1,3}\]|\bbounding box(?:es)?\b",
    re.I,
)


def mentions_source(answer: str) -> str | None:
    """The answer talks about the text it was given ("the description", "the caption", "the text
    provided", "based on the information", "the facts", a numbered fact reference such as "[2]",
    "bounding boxes"), which breaks the illusion of seeing the image."""
    return SOURCE_LEAK if _SOURCE.search(answer or "") else None


Rule = Callable[[str, "str | None", int], "str | None"]  # (text, finish_reason, min_words) -> reason

# The rules by name. A recipe's tuple in RULES_BY_RECIPE gives the order they run in (the first
# reason is reported); EMPTY is checked before any of them, for every recipe.
RULES: dict[str, Rule] = {
    "truncated": lambda text, finish, min_words: truncated(text, finish),
    "repetition": lambda text, finish, min_words: repetition(text),
    "too_short": lambda text, finish, min_words: too_short(text, min_words=min_words),
    "refusal": lambda text, finish, min_words: refusal(text),
    "mentions_source": lambda text, finish, min_words: mentions_source(text),
}

# Recipe names as conversation rows carry them (mminstruct/answer.py RECIPE and
# instructify/sampling.py RECIPE; a test keeps them equal, this module imports neither).
MMINSTRUCT = "mm-instruct"
INSTRUCTIFY = "instructify"

# Which rules apply to which recipe's answers (see the module docstring for why).
RULES_BY_RECIPE: dict[str, tuple[str, ...]] = {
    # the most specific reason first: a refusal or a source leak is usually short too
    MMINSTRUCT: ("truncated", "repetition", "refusal", "mentions_source", "too_short"),
    INSTRUCTIFY: ("repetition", "refusal", "mentions_source"),
}


def rules_for(recipe: str) -> tuple[str, ...]:
    """The rule names of a recipe; an unknown recipe is an error, never a silent default."""
    try:
        return RULES_BY_RECIPE[recipe]
    except KeyError:
        raise ValueError(f"no filter rules for recipe {recipe!r} (known: {sorted(RULES_BY_RECIPE)})") from None


def check_answer(answer: str | None, finish_reason: str | None = None, *, min_words: int = MIN_WORDS,
                 recipe: str = MMINSTRUCT) -> str | None:
    """The first reason to drop this answer under `recipe`'s rules (in that recipe's order), or None
    when it passes them all. The default recipe is MM-Instruct: every rule."""
    rules = rules_for(recipe)
    text = (answer or "").strip()
    if not text:
        return EMPTY
    for name in rules:
        reason = RULES[name](text, finish_reason, min_words)
        if reason:
            return reason
    return None


def check_conversation(recipe: str, answers: Sequence[str | None], finish_reason: str | None = None) -> str | None:
    """The first reason to drop a conversation: its recipe's rules on each assistant answer, in
    turn order. `finish_reason` is the generation's, so it applies to the last answer only; no
    answer at all is EMPTY."""
    answers = list(answers)
    if not answers:
        return EMPTY
    for i, text in enumerate(answers):
        reason = check_answer(text, finish_reason if i == len(answers) - 1 else None, recipe=recipe)
        if reason:
            return reason
    return None


def filter_settings() -> dict[str, Any]:
    """The thresholds in force and the rules applied to each recipe (record them with a run)."""
    return {
        "min_words": MIN_WORDS, "ngram": NGRAM, "max_ngram_repeats": MAX_NGRAM_REPEATS,
        "max_duplicate_ngram_share": MAX_DUPLICATE_NGRAM_SHARE, "max_same_word_run": MAX_SAME_WORD_RUN,
        "max_same_line": MAX_SAME_LINE, "mid_sentence_min_words": MID_SENTENCE_MIN_WORDS,
        "rules_by_recipe": {recipe: list(rules) for recipe, rules in RULES_BY_RECIPE.items()},
    }


# -- fit check ------------------------------------------------------------------------------------

_YES_NO = re.compile(r"^(?:answer\s*:\s*)?(yes|no)(?:[\s]*[.!,;:\n]|$)", re.I)


def parse_yes_no(text: str | None) -> bool | None:
    """Strict yes/no: True / False when the reply starts with the word yes or no (optionally after
    "Answer:", markdown emphasis or quotes) followed by the end or punctuation; else None.
    "Yes, it fits." -> True; "No." -> False; "Yes and no", "Maybe", "I think yes", "Nope" -> None."""
    if text is None:
        return None
    t = text.strip().strip("*_\"'`“”").strip()
    m = _YES_NO.match(t)
    if not m:
        return None
    return m.group(1).lower() == "yes"


# -- LLaVA format ---------------------------------------------------------------------------------

IMAGE_TOKEN = "<image>"


def to_llava_turns(instruction: str, answer: str) -> list[dict[str, str]]:
    """LLaVA `conversations`: the human turn is "<image>\\n" + instruction, then the answer.
    Any stray <image> token in the texts is removed so the token appears exactly once."""
    ins = " ".join(instruction.replace(IMAGE_TOKEN, " ").split())
    ans = answer.replace(IMAGE_TOKEN, "").strip()
    if not ins or not ans:
        raise ValueError("instruction and answer must be non-empty")
    return [{"from": "human", "value": f"{IMAGE_TOKEN}\n{ins}"}, {"from": "gpt", "value": ans}]

"""The stand-in's own phrasing, in one place: every word its templates add around the facts.

The verifier treats these words as neutral (they carry no claim about the image); planted
unsupported claims use only DISTRACTORS and COLOURS, which no template here contains.
"""

from __future__ import annotations

import hashlib

from .scene import NUMBER_WORDS, Thing, words_of

DISTRACTORS = ("giraffe", "umbrella", "bicycle", "guitar", "pineapple", "lighthouse", "kite", "teapot", "violin", "zebra")
COLOURS = ("purple", "turquoise", "magenta", "crimson")

CAPTION_QUESTIONS = ("What is happening in this image?", "What does this picture show?",
                     "Can you describe the scene for me?", "What stands out in this photo?",
                     "What is the main thing going on here?", "How would you sum up this picture?",
                     "What do you see at first glance?", "What is this photo of?")
STATEMENT_QUESTIONS = ("What else do you notice about the {s}?", "Is there anything more to say about the {s}?",
                       "What other detail can you point out here?")
COUNT_Q, COUNT_A = "How many {p} are there in the image?", "There are {n} {p} in the image."
WHERE_Q, WHERE_A = "Where is the {l} in the image?", "The {l} is {w} of the image, and it looks {z} in the frame."
MANY_Q, MANY_A = "Are there many {p} in the image?", "Yes, there are many {p} {w}."
TEXT_Q, TEXT_A = "What does the writing in the image say?", 'The writing reads "{t}".'
YES_Q, YES_A = "Is there a {l} in the image?", "Yes, there is a {l} {w} of the image."
NO_Q, NO_A = "Is there a {l} in the image?", "No, there is no {l} in the image."
CHOICE_Q = "Which of these can be seen in the image?"
STATEMENT_Q, TRUE_A, FALSE_A = "True or false: {s}", "True, {s}", "False, there is no {l} in the image."
BLANK_Q = "Fill in the blank: {s}"
AVOID_QS = ("What is the {l} doing in this picture?", "What colour is the {l} in the image?",
            "Where is the {l} in this photo?")
AVOID_A = "There is no {l} in the image. Instead, {c}"
READ_QS = ("What text can be read in this picture?", "What is written in the image?")  # not TEXT_Q: no repeat
REGION_Q, REGION_A = "Where exactly is the {z} {l} {w}?", "The {l} {w}: {r}."
CHOICE_FILLERS = ("a crowded city street at night", "a bowl of fruit on a kitchen table", "a snowy mountain road")
REASON_QS = ("Looking at this image, can you explain {angle}?", "What can you work out about {angle} from this picture?",
             "Based on what is visible, can you reason about {angle}?")
REASON_A = ("Looking closely, {c} {t} Putting these visible details together, the most likely explanation is "
            "that the {s} is the focus of the moment, and the rest of the scene follows from it.")
OVERALL, IN_SHORT = "Overall, {c}", "In short, {c}"
MAIN_SUBJECT = "The {s} is the main subject."
PLANTED = "There is also a {colour} {thing} {w} of the picture."
VERIFY_TRUE, VERIFY_FALSE = "True\nFacts: {refs}", "False\nFacts: none"
DECLARATIVE_FALLBACK = "Asked {q}, the answer is {a}"

WHERE = {"centre": "in the centre", "whole image": "spread across the whole image"}

# Only what the stand-in's ANSWERS say around the facts (CHOICE_FILLERS appear in questions only).
_TEMPLATES = (CAPTION_QUESTIONS + STATEMENT_QUESTIONS
              + (COUNT_Q, COUNT_A, WHERE_Q, WHERE_A, MANY_Q, MANY_A, TEXT_Q, TEXT_A, YES_Q, YES_A, NO_Q, NO_A,
                 CHOICE_Q, REASON_A, *REASON_QS, OVERALL, IN_SHORT, MAIN_SUBJECT, DECLARATIVE_FALLBACK,
                 STATEMENT_Q, TRUE_A, FALSE_A, BLANK_Q, *AVOID_QS, AVOID_A, *READ_QS, REGION_Q, REGION_A))
_FUNCTION = ("a an the and or but of to in on at for with from by as that which who is are was were be been it its "
             "this these those there here what where how many much some any all also very so then than yes no not "
             "side part looks seen can could would should will just one more other else while into onto about "
             "b c d e f i s")
# Numbers are never neutral: a count must come from the facts.
NEUTRAL = frozenset(w for w in words_of(" ".join(_TEMPLATES) + " " + _FUNCTION) if not w.isdigit()) \
    - words_of(" ".join(DISTRACTORS + COLOURS + CHOICE_FILLERS))


def digest(*parts: object) -> int:
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def plural(label: str, n: int | None = 2) -> str:
    if n == 1:
        return label
    if label.endswith(("s", "sh", "ch", "x")):
        return label + "es"
    if label.endswith("y") and len(label) > 1 and label[-2] not in "aeiou":
        return label[:-1] + "ies"
    return label + "s"


def where_phrase(t: Thing) -> str:
    w = t.where or "whole image"
    if w in WHERE:
        return WHERE[w]
    return f"on the {w} side" if w in ("left", "right") else f"in the {w} part"


def lower_first(text: str) -> str:
    text = text.strip()
    first = text.split(" ", 1)[0]
    return text if len(first) > 1 and first.isupper() else text[:1].lower() + text[1:]  # keep "NASA", "TV"


def sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?", '"')) else text + "."


def number(n: int) -> str:
    return NUMBER_WORDS.get(str(n), str(n))

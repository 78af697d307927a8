"""MM-Instruct's prompts and the selection judges, answered as a competent model would."""

from __future__ import annotations

import re
from collections import Counter

from . import phrasing as P
from .scene import Scene, scene_from_description

# (instruction for one image, the general form a merge writes, what it needs from the image)
INSTRUCTIONS = (
    ("Write a short social-media post about the {s} in this image, ending with two hashtags.",
     "Write a short social-media post about the main subject of this image, ending with two hashtags.", None),
    ("Write a four-line poem inspired by the {s} in this image.",
     "Write a four-line poem inspired by the main subject of this image.", None),
    ("Give three practical tips for photographing a {s} like the one in this image.",
     "Give three practical tips for photographing a subject like the one in this image.", None),
    ("Write a short story of about five sentences about the {s} in this image.",
     "Write a short story of about five sentences about what is happening in this image.", None),
    ("Write an advertising slogan and a short pitch inspired by the {s} in this image.",
     "Write an advertising slogan and a short pitch inspired by this image.", None),
    ("Explain to a ten-year-old what the {s} in this image is and why it looks the way it does.",
     "Explain to a ten-year-old what this image shows and why it looks the way it does.", None),
    ("Transcribe the writing visible on the {s} in this image and explain what it tells us.",
     "Transcribe the writing visible in this image and explain what it tells us.", "text"),
)
_KIND = (("hashtag", "post"), ("poem", "poem"), ("tips", "tips"), ("story", "story"), ("slogan", "ad"),
         ("transcribe", "text"), ("writing", "text"))
_REFUSAL = re.compile(r"\b(?:sorry|cannot|can't|as an ai|unable)\b", re.I)


def _fits(s: Scene, need: str | None) -> bool:
    return need != "text" or bool(s.texts)


def instruction(values: dict[str, str], h: int) -> str:
    """A new instruction for this image, unlike the examples, that makes sense for it."""
    s = scene_from_description(values["description"])
    usable = [(i, t) for i, t in enumerate(INSTRUCTIONS) if _fits(s, t[2])]
    examples = values.get("examples", "").lower()
    fresh = [(i, t) for i, t in usable if t[0].split(" {s}")[0].lower() not in examples] or usable
    _, (specific, _, _) = fresh[h % len(fresh)]
    return specific.format(s=s.subject())


def _template_of(text: str) -> int | None:
    for i, (specific, general, _) in enumerate(INSTRUCTIONS):
        head = specific.split("{s}")[0]
        if text.startswith(head) or text == general:
            return i
    return None


def merge(values: dict[str, str]) -> str:
    """The general form of the task most members share (image-specific words removed)."""
    members = [ln[2:].strip() for ln in values["examples"].splitlines() if ln.startswith("- ")]
    kinds = Counter(k for k in (_template_of(m) for m in members) if k is not None)
    if not kinds:
        return "Write a short piece of writing inspired by this image."
    return INSTRUCTIONS[kinds.most_common(1)[0][0]][1]


def kind_of(instruction_text: str) -> str:
    low = instruction_text.lower()
    return next((k for word, k in _KIND if word in low), "explain")


def answer(values: dict[str, str]) -> str:
    """A grounded answer of the requested kind, at least two full sentences."""
    s = scene_from_description(values["description"])
    sub = s.subject()
    caps = [P.sentence(c) for c in s.captions] or [f"The picture shows a {sub}."]
    kind = kind_of(values["instruction"])
    if kind == "post":
        return (f"{caps[0]} {caps[-1]} Some moments are worth stopping for, and this is one of them. "
                f"#{sub.replace(' ', '')} #photography")
    if kind == "poem":
        return "\n".join([caps[0].rstrip("."), f"the {sub} holds the eye a while,", "a quiet moment caught in light,",
                          "a picture worth a second look."])
    if kind == "tips":
        return (f"1. Get close enough that the {sub} fills most of the frame.\n"
                f"2. Watch the light so the details of the {sub} stay clear.\n"
                f"3. Keep the background simple, as in this shot: {P.lower_first(caps[0])}")
    if kind == "story":
        return (f"{caps[0]} Nobody had planned the moment, yet there it was. The {sub} seemed to wait for someone to "
                f"notice. {caps[-1]} By evening, the picture was the one everyone talked about.")
    if kind == "ad":
        return (f'Slogan: "See the {sub} like never before."\n\n{caps[0]} Every detail invites a closer look, '
                f"and that is exactly the feeling we want you to have.")
    if kind == "text":
        if not s.texts:
            return f"No writing can be made out here. {caps[0]}"
        said = ", ".join(f'"{t}"' for t in s.texts)
        return f"The writing reads {said}. Words like these label what we are looking at: {P.lower_first(caps[0])}"
    return (f"This picture shows {P.lower_first(caps[0])} It looks the way it does because of what is in it: "
            f"{P.lower_first(caps[-1])}")


def fit(values: dict[str, str]) -> bool:
    s = scene_from_description(values["description"])
    i = _template_of(values["instruction"].strip())
    need = INSTRUCTIONS[i][2] if i is not None else ("text" if kind_of(values["instruction"]) == "text" else None)
    return _fits(s, need)


def quality(instruction_text: str, answer_text: str) -> int:
    """0-100: long enough, finished, on the instruction's topic, not a loop, not a refusal."""
    words = answer_text.lower().split()
    if not words:
        return 0
    score = 45 + min(30, len(words) // 3)
    score += 10 if answer_text.rstrip().endswith((".", "!", "?", '"')) or words[-1].startswith("#") else 0
    if len(set(words)) / len(words) < 0.5:
        score -= 40
    if _REFUSAL.search(answer_text):
        score -= 50
    topic = set(re.findall(r"[a-z]{4,}", instruction_text.lower())) & set(re.findall(r"[a-z]{4,}", answer_text.lower()))
    score += 10 if topic else 0
    return max(0, min(100, score))


def judge(values: dict[str, str]) -> str:
    q = quality(values["instruction"], values["answer"])
    why = "It follows the instruction and is specific." if q >= 70 else "It is thin, unfinished or off the instruction."
    return f"Score: {q}\n{why}"


def pairwise(values: dict[str, str]) -> str:
    qa = quality(values.get("instruction") or values.get("instruction_a", ""), values["answer_a"])
    qb = quality(values.get("instruction") or values.get("instruction_b", ""), values["answer_b"])
    verdict = "A" if qa > qb + 5 else "B" if qb > qa + 5 else "tie"
    why = {"A": "Answer A is more complete and helpful.", "B": "Answer B is more complete and helpful.",
           "tie": "Both answers are about as good."}[verdict]
    return f"{why}\nVerdict: {verdict}"

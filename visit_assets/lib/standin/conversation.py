"""Instructify's three prompts answered as a competent model would: conversations of every prompt
type grounded in the numbered facts, the strict True/False verification, the declarative rewrite."""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import phrasing as P
from .scene import Scene, scene_from_facts, unsupported_words, words_of


@dataclass(frozen=True)
class Pair:
    question: str
    answer: str


def candidate_pairs(s: Scene) -> list[Pair]:
    """Every question the facts settle, one per fact where possible, in fact order."""
    # a question chosen by the fact's own text: the same wording never returns for another fact
    out: list[Pair] = []
    used: set[str] = set()
    for c in s.captions:
        k = P.digest(c)
        while P.CAPTION_QUESTIONS[k % len(P.CAPTION_QUESTIONS)] in used and len(used) < len(P.CAPTION_QUESTIONS):
            k += 1  # never the same question twice in one reply
        used.add(P.CAPTION_QUESTIONS[k % len(P.CAPTION_QUESTIONS)])
        out.append(Pair(P.CAPTION_QUESTIONS[k % len(P.CAPTION_QUESTIONS)],
                        f"The image shows {P.lower_first(P.sentence(c))}"))
    for t in s.things:
        if t.count is None:
            out.append(Pair(P.MANY_Q.format(p=P.plural(t.label)), P.MANY_A.format(p=P.plural(t.label), w=P.where_phrase(t))))
        elif t.count > 1:
            out.append(Pair(P.COUNT_Q.format(p=P.plural(t.label)),
                            P.COUNT_A.format(n=P.number(t.count), p=P.plural(t.label))))
        elif t.where:
            out.append(Pair(P.WHERE_Q.format(l=t.label), P.WHERE_A.format(l=t.label, w=P.where_phrase(t), z=t.size)))
    for q, a in s.qa:
        question = q or P.STATEMENT_QUESTIONS[P.digest(a) % len(P.STATEMENT_QUESTIONS)].format(s=s.subject())
        out.append(Pair(question, P.sentence(a)))
    out += [Pair(P.TEXT_Q, P.TEXT_A.format(t=t)) for t in s.texts[:1]]
    return out


def _rotate(items: list, h: int) -> list:
    return items[h % len(items):] + items[: h % len(items)] if items else []


def _absent(s: Scene, h: int, k: int = 0) -> str:
    have = s.words()
    free = [d for d in P.DISTRACTORS if d not in have] or ["unicorn"]  # an image holding all ten: still absent
    return free[(h + k) % len(free)]


def _things_sentence(s: Scene) -> str:
    parts = [f"{'many' if t.count is None else P.number(t.count)} {P.plural(t.label, t.count)} {P.where_phrase(t)}"
             for t in s.things[:4] if t.where]
    return P.sentence("There are " + ", ".join(parts)) if parts else ""


def _short_caption(s: Scene) -> str:
    if not s.captions:
        return P.sentence(s.qa[0][1]) if s.qa else "The image shows a scene."
    words = min(s.captions, key=len).rstrip(".").split()
    return P.sentence(" ".join(words[:20]))


def _yes_no(s: Scene, n: int, h: int) -> list[Pair]:
    present = [t for t in s.things if t.where]
    out = []
    for i in range(n):
        if i % 2 == 0 and present:
            t = present[(h + i) % len(present)]
            pair = Pair(P.YES_Q.format(l=t.label), P.YES_A.format(l=t.label, w=P.where_phrase(t)))
        else:
            d = _absent(s, h, i)
            pair = Pair(P.NO_Q.format(l=d), P.NO_A.format(l=d))
        if pair not in out:
            out.append(pair)
    return out


def _choices(s: Scene, n: int, options: int, h: int) -> list[Pair]:
    rights = [t.label for t in s.things] or [" ".join(c.rstrip(".").split()[:8]) for c in s.captions[:1]]
    if not rights:  # nothing to choose from: plain grounded questions instead of an empty reply
        return _rotate(candidate_pairs(s), h)[:n]
    out = []
    for i, right in enumerate(rights[:n]):
        wrong = [d for d in P.DISTRACTORS if d not in s.words()] if s.things else list(P.CHOICE_FILLERS)
        opts = _rotate(wrong, h + i)[: options - 1]
        at = (h + i) % options
        opts.insert(at, right)
        letters = "ABCDEF"
        lines = "\n".join(f"{letters[k]}) {o}" for k, o in enumerate(opts))
        out.append(Pair(f"{P.CHOICE_Q}\n{lines}", f"{letters[at]}) {right}"))
    return out


def _true_false(s: Scene, n: int, h: int) -> list[Pair]:
    """True statements from the facts, and false ones naming an absent thing, alternating."""
    truths = _rotate(_statements(s), h)
    out = []
    for i in range(n):
        if i % 2 == 0 and truths:
            t = truths[(i // 2) % len(truths)]
            pair = Pair(P.STATEMENT_Q.format(s=t), P.TRUE_A.format(s=P.lower_first(t)))
        else:
            d = _absent(s, h, i)
            pair = Pair(P.STATEMENT_Q.format(s=f"There is a {d} in the image."), P.FALSE_A.format(l=d))
        if pair not in out:
            out.append(pair)
    return out


def _blanks(s: Scene, n: int, h: int) -> list[Pair]:
    """A grounded sentence with its count, place or last word blanked out."""
    out = []
    for t in s.things:
        if t.count and t.count > 1:
            full = P.COUNT_A.format(n=P.number(t.count), p=P.plural(t.label))
            out.append(Pair(P.BLANK_Q.format(s=P.COUNT_A.format(n="___", p=P.plural(t.label))), full))
        elif t.where:
            full = P.sentence(f"The {t.label} is {P.where_phrase(t)} of the image")
            out.append(Pair(P.BLANK_Q.format(s=P.sentence(f"The {t.label} is ___ of the image")), full))
    for c in s.captions:
        words = P.sentence(c).rstrip(".").split()
        if len(words) > 3:
            out.append(Pair(P.BLANK_Q.format(s=" ".join(words[:-1] + ["___."])), P.sentence(c)))
    return _rotate(out, h)[:n] or _rotate(candidate_pairs(s), h)[:n]


def _avoidance(s: Scene, n: int, h: int) -> list[Pair]:
    shown = P.lower_first(P.sentence(s.captions[0])) if s.captions else P.MAIN_SUBJECT.format(s=s.subject()).lower()
    return [Pair(P.AVOID_QS[(h + i) % len(P.AVOID_QS)].format(l=_absent(s, h, i)),
                 P.AVOID_A.format(l=_absent(s, h, i), c=shown)) for i in range(n)]


def _reading(s: Scene, n: int, h: int) -> list[Pair]:
    return [Pair(P.READ_QS[(h + i) % len(P.READ_QS)], P.TEXT_A.format(t=t))
            for i, t in enumerate(_rotate(s.texts, h)[:n])] or _rotate(candidate_pairs(s), h)[:n]


def _regions(s: Scene, n: int, h: int) -> list[Pair]:
    placed = [t for t in s.things if t.region]
    return [Pair(P.REGION_Q.format(z=t.size, l=t.label, w=P.where_phrase(t)),
                 P.REGION_A.format(l=t.label, w=P.where_phrase(t), r=t.region))
            for t in _rotate(placed, h)[:n]] or _rotate(candidate_pairs(s), h)[:n]


def _statements(s: Scene) -> list[str]:
    """Distinct grounded sentences: captions, one per placed object, the visible text."""
    out = [P.sentence(c) for c in s.captions]
    out += [P.sentence(f"There {'are many' if t.count is None else 'is a' if t.count == 1 else 'are ' + P.number(t.count)} "
                       f"{P.plural(t.label, t.count)} {P.where_phrase(t)}") for t in s.things if t.where]
    out += [P.TEXT_A.format(t=t) for t in s.texts]
    return [x[0].upper() + x[1:] for x in out] or [_short_caption(s)]


def _constrained(s: Scene, task: str, constraint: str) -> Pair:
    items, c = _statements(s), constraint.lower()
    if "bullet" in c:
        body = "\n".join("- " + x for x in (items + [P.MAIN_SUBJECT.format(s=s.subject())] * 3)[:3])
    elif "fewer than 15" in c:
        body = P.sentence(" ".join(_short_caption(s).rstrip(".").split()[:12]))
    elif '"overall"' in c:
        body = P.OVERALL.format(c=P.lower_first(items[0]))
    elif "two sentences" in c:
        body = " ".join((items + [P.MAIN_SUBJECT.format(s=s.subject())])[:2])
    elif "numbered" in c:
        body = "\n".join(f"{k}. {x}" for k, x in enumerate(items[:3], 1))
    else:
        body = " ".join(items[:2]) + " " + P.IN_SHORT.format(c=P.lower_first(_short_caption(s)))
    return Pair(f"Please {task}. {constraint}", body)


def conversation_pairs(prompt_id: str, values: dict[str, str], h: int) -> list[Pair]:
    """The pairs a competent model writes for one Instructify prompt type (its slots in `values`)."""
    s = scene_from_facts(values["facts"])
    n = int(values.get("turns") or 1)
    if prompt_id == "llava_conversation":
        return _rotate(candidate_pairs(s), h)[:n]
    if prompt_id == "yes_no":
        return _yes_no(s, n, h)
    if prompt_id == "multiple_choice":
        return _choices(s, n, int(values.get("options") or 4), h)
    if prompt_id == "short_caption":
        return [Pair(values["request"], _short_caption(s))]
    if prompt_id == "detailed_description":
        body = " ".join([P.sentence(c) for c in s.captions] + [_things_sentence(s)] +
                        [P.TEXT_A.format(t=t) for t in s.texts[:2]]).strip()
        return [Pair(values["request"], body or _short_caption(s))]
    if prompt_id == "complex_reasoning":
        c = P.lower_first(P.sentence(s.captions[0])) if s.captions else ""
        return [Pair(P.REASON_QS[h % len(P.REASON_QS)].format(angle=values["angle"]), " ".join(
            P.REASON_A.format(c=c, t=_things_sentence(s), s=s.subject()).split()))]
    if prompt_id == "constrained_instruction":
        return [_constrained(s, values["task"], values["constraint"])]
    by_type = {"true_false": _true_false, "fill_in_the_blank": _blanks, "avoidance": _avoidance,
               "ocr_reading": _reading, "grounding": _regions}
    if prompt_id in by_type:
        return by_type[prompt_id](s, n, h)
    return _rotate(candidate_pairs(s), h)[:n]  # a prompt type added later: plain grounded pairs


def planted_claim(values: dict[str, str], h: int) -> str:
    """A sentence no fact supports: a coloured object the image does not have."""
    s = scene_from_facts(values["facts"])
    t = s.things[0] if s.things else None
    return P.PLANTED.format(colour=P.COLOURS[h % len(P.COLOURS)], thing=_absent(s, h),
                            w=P.where_phrase(t) if t else "in one corner")


def render_pairs(pairs: list[Pair]) -> str:
    return "\n".join(f"Question: {p.question}\nAnswer: {p.answer}" for p in pairs)


_LIST_NUMBER = re.compile(r"(?m)^\s*\d+[.)]\s+")  # "1. " starting a line numbers a list item: not a count


def verify(values: dict[str, str]) -> tuple[str, bool]:
    """(reply, supported): True with the supporting fact numbers when every word of the answer is
    accounted for by the facts (or is the stand-in's own neutral phrasing)."""
    s = scene_from_facts(values["facts"])
    facts = s.facts
    bad = unsupported_words(_LIST_NUMBER.sub("", values["answer"]), s.words(), P.NEUTRAL)
    if bad:
        return P.VERIFY_FALSE, False
    used = words_of(values["question"] + " " + values["answer"]) - P.NEUTRAL
    scores = [len(words_of(f) & used) / max(1, len(words_of(f) - P.NEUTRAL)) for f in facts]
    refs = [i + 1 for i, v in enumerate(scores) if v >= 0.5] or [max(range(len(facts)), key=lambda i: scores[i]) + 1]
    return P.VERIFY_TRUE.format(refs=", ".join(map(str, refs))), True


_DECLARATIVE = (
    (re.compile(r"^what colou?r (is|are) (.+)\?$", re.I), "{1} {0} {a}"),
    (re.compile(r"^how many (.+?) are there.*\?$", re.I), "There are {a} {0}"),
    (re.compile(r"^what is (.+?) doing\?$", re.I), "{0} is {a}"),
    (re.compile(r"^where (is|are) (.+)\?$", re.I), "{1} {0} {a}"),
)


def declarative(values: dict[str, str]) -> str:
    q, a = values["question"].strip(), values["answer"].strip().rstrip(".")
    if len(a.split()) >= 4:
        return P.sentence(a[0].upper() + a[1:])
    for pattern, form in _DECLARATIVE:
        m = pattern.match(q)
        if m:
            text = form.format(*m.groups(), a=P.lower_first(a))
            return P.sentence(text[0].upper() + text[1:])
    return P.sentence(P.DECLARATIVE_FALLBACK.format(q=q.rstrip("?").lower(), a=a))


_LAYOUT_LINE = re.compile(r"^\s*(?:- )?(?P<head>[^:]+):\s*(?P<words>[^;]*);\s*(?P<geometry>.+?)\s*$")
_SIZED = re.compile(r"^(large|medium|small),\s*([^,]+)(.*)$")


def _placed(words: str) -> str:
    """ "large, top left, in the foreground" -> "large and in the top left of the image, in the foreground";
    a group's words stay as they are."""
    m = _SIZED.match(words.strip())
    return f"{m[1]} and in the {m[2]} of the image{m[3]}" if m else words.strip()


def layout_paragraph(values: dict[str, str]) -> str:
    """A competent rewrite of a layout subtree: one sentence per object line, every name and centre kept
    (scene.py reads these sentences back, as it reads layout lines)."""
    sentences = []
    for line in values["layout"].splitlines():
        m = _LAYOUT_LINE.match(line)
        if m:
            head = m["head"].strip().replace("(inside or on", "(on or in")
            verb = "are" if head.startswith("many ") else "is"
            sentences.append(P.sentence(f"The {head} {verb} {_placed(m['words'])}, at {m['geometry'].strip()}"))
    return " ".join(sentences)

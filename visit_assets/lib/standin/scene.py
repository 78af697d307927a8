"""What a prompt says about an image, parsed into a small scene model the replies draw on.

Two inputs: Instructify's numbered facts ("[1] caption ...", object counts and layout lines,
QA facts, 'Visible text: "..."') and MM-Instruct's description (sections "Captions:",
"Objects (...):", "Known facts (...):", "Text visible in the image:"). Also the word-level
support test the stand-in's verifier uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NUMBERS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
           "nine": "9", "ten": "10"}
NUMBER_WORDS = {v: k for k, v in NUMBERS.items()}
_WORD = re.compile(r"[a-z0-9]+")
_NEGATION = re.compile(r"\b(?:no|not|without|neither|nor)\s+(?:a\s+|an\s+|any\s+)?([a-z]+)")


@dataclass
class Thing:
    label: str  # singular label, e.g. "cat"
    count: int | None  # None: "many"
    where: str = ""  # "left", "top right", "centre"
    size: str = ""  # "large" | "medium" | "small"
    region: str = ""  # "centre (0.30, 0.55), size 0.65 x 0.90", as the layout fact gives it


@dataclass
class Scene:
    captions: list[str] = field(default_factory=list)
    things: list[Thing] = field(default_factory=list)
    qa: list[tuple[str, str]] = field(default_factory=list)  # (question, answer); question "" for a statement
    texts: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)  # every fact line as given, numbered from 1

    def subject(self) -> str:
        big = sorted(self.things, key=lambda t: ({"large": 0, "medium": 1, "small": 2}.get(t.size, 3), self.things.index(t)))
        return big[0].label if big else "scene"

    def words(self) -> set[str]:
        return words_of(" ".join(self.facts or self.captions + [t.label for t in self.things]
                                 + [f"{q} {a}" for q, a in self.qa] + self.texts))


def stem(w: str) -> str:
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def words_of(text: str) -> set[str]:
    return {stem(NUMBERS.get(w, w)) for w in _WORD.findall(text.lower())}


def unsupported_words(answer: str, support: set[str], neutral: set[str] | frozenset[str]) -> set[str]:
    """Words of `answer` that neither the facts nor the stand-in's own phrasing account for.
    A word after a negation ("no giraffe") is a claim of absence: unsupported when the facts HAVE it."""
    text = answer.lower()
    negated = {stem(w) for w in _NEGATION.findall(text)}
    bad = {w for w in negated if w in support and w not in neutral}
    rest = words_of(_NEGATION.sub(" ", text)) - negated
    return bad | {w for w in rest if w not in support and w not in neutral}


# -- Instructify facts ---------------------------------------------------------------------------

_FACT = re.compile(r"^\[(\d+)\]\s?(.*)$")
_COUNT = re.compile(r"(many|\d+)\s+([a-z][a-z ]*?)$")
_BAND = r"(?:, in the (?:foreground|middle ground|background))?"  # facts.py's depth band, when a box has depth
_LAYOUT = re.compile(r"^\s*(?:-\s+)?(?:many\s+)?([a-z][a-z ]*?)(?:\s\d+)?(?:\s\(inside or on [^)]*\))?:\s*"
                     rf"(?:(large|medium|small),\s*([a-z ]+?){_BAND};|spread across the image{_BAND};|"
                     rf"in the ([a-z ]+) area{_BAND};)")
_TEXT = re.compile(r'^Visible text: "(.*)"\.?$')
# a layout subtree rewritten as a paragraph (conversation.layout_paragraph's sentences)
_PARAGRAPH = re.compile(r"The (?:many )?([a-z][a-z ]*?)(?: \d+)?(?: \(on or in [^)]*\))? (?:is|are) "
                        rf"(?:(large|medium|small) and in the ([a-z ]+) of the image|spread across the image|"
                        rf"in the ([a-z ]+) area){_BAND}, at (?:region )?centre")
_NUMBER = r"\d+(?:\.\d+)?"  # not [\d.]+: a paragraph's sentence ends with a full stop after the size
_REGION = re.compile(rf"centre \({_NUMBER}, {_NUMBER}\), size {_NUMBER} x {_NUMBER}")


def numbered_facts(block: str) -> list[str]:
    """The facts of a "[n] text" block (continuation lines joined to their fact)."""
    facts: list[str] = []
    for line in block.splitlines():
        m = _FACT.match(line.strip()) if line.startswith("[") else None
        if m:
            facts.append(m.group(2))
        elif facts:
            facts[-1] += "\n" + line.strip()
    return facts


def singular(word: str) -> str:
    return " ".join(stem(w) for w in word.split())


def scene_from_facts(block: str) -> Scene:
    s = Scene(facts=numbered_facts(block))
    for fact in s.facts:
        first = fact.splitlines()[0]
        if first.startswith("Objects: "):
            for part in first[len("Objects: "):].rstrip(".").split(", "):
                m = _COUNT.match(part.strip())
                if m and not any(t.label == singular(m.group(2)) for t in s.things):
                    s.things.append(Thing(singular(m.group(2)), None if m.group(1) == "many" else int(m.group(1))))
        elif text := _TEXT.match(first):
            s.texts.append(text.group(1))
        elif _LAYOUT.match(first):
            for line in fact.splitlines():
                m = _LAYOUT.match(line)
                if m:
                    region = _REGION.search(line)
                    _place(s, singular(m.group(1)), m.group(3) or m.group(4) or "whole image", m.group(2) or "large",
                           region.group(0) if region else "")
        elif _PARAGRAPH.match(first):
            for m in _PARAGRAPH.finditer(fact):
                region = _REGION.search(fact, m.end() - len("centre"))
                _place(s, singular(m.group(1)), m.group(3) or m.group(4) or "whole image", m.group(2) or "large",
                       region.group(0) if region else "")
        elif "?" in first:
            q, _, a = first.partition("?")
            s.qa.append((q.strip() + "?", a.strip()))
        elif not (s.things or s.qa or s.texts):  # facts come as captions, objects, QA, text
            s.captions.append(first)
        else:
            s.qa.append(("", first))
    return s


def _place(s: Scene, label: str, where: str, size: str, region: str = "") -> None:
    for t in s.things:
        if t.label == label and not t.where:
            t.where, t.size, t.region = where.strip(), size, region
            return
    if not any(t.label == label for t in s.things):
        s.things.append(Thing(label, 1, where.strip(), size, region))


# -- MM-Instruct description ---------------------------------------------------------------------

_DESC_OBJECT = re.compile(r"^(many|\d+)\s+([a-z][a-z ]*?):\s*([a-z ]+?)\s*\((large|medium|small)\)")


def scene_from_description(text: str) -> Scene:
    s, section = Scene(), ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("- "):
            section = line.split("(")[0].split(":")[0].strip().lower()
            continue
        item = line[2:].strip()
        s.facts.append(item)
        if section.startswith("caption"):
            s.captions.append(item)
        elif section.startswith("object"):
            m = _DESC_OBJECT.match(item)
            if m:
                s.things.append(Thing(singular(m.group(2)), None if m.group(1) == "many" else int(m.group(1)),
                                      m.group(3), m.group(4)))
        elif section.startswith("known"):
            q, _, a = item.partition("?")
            s.qa.append((q + "?", a.strip()) if a else ("", item))
        elif section.startswith("text"):
            s.texts.append(item.strip('"'))
    return s

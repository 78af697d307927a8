"""Instructify's optional layout pass: an LLM turns each subtree of the box layout into a paragraph.

The reference describes boxes as a layout tree and has the LLM write it as paragraphs (a plain box
list being its fallback). Here each top-level subtree fact (an object with what lies inside or on
it) is one request, so a paragraph replaces exactly one fact and is consumed as that fact was. A
paragraph is kept only if it names every object of its subtree and keeps every "centre (x, y)";
otherwise the layout text stays, with the reason in its `note` (a small model drops objects, and a
fact that lost them, or their regions, would no longer support what grounding prompts and the
verifier need).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from visit_assets.lib.instructify.facts import MIN_DECLARATIVE_CHARS, Fact, apply_rewrites, gives_region
from visit_assets.lib.llm.types import LLMRequest, LLMResult, SamplingParams
from visit_assets.lib.prompts import load_prompt, prompt_dir

# visit_assets/prompts/instructify_checks/layout_paragraph.yaml (rows record `layout_prompt_version`)
LAYOUT_PROMPT = load_prompt("layout_paragraph", prompt_dir("instructify_checks"))
LAYOUT_PROMPT_VERSION: int = LAYOUT_PROMPT.version
LAYOUT_PARAMS = SamplingParams(temperature=0.0, max_tokens=256)  # a paragraph per subtree; greedy, as the QA rewrite
NOTE = "layout paragraph"

# "person 2 (inside or on bed): ..." / "- many coins: ..." -> the object's name
_NAME = re.compile(r"^\s*(?:- )?(?:many )?(?P<name>[^:]+?)(?: \(inside or on [^)]*\))?:", re.MULTILINE)
_CENTRE = re.compile(r"centre \([0-9.]+, [0-9.]+\)")
_PREFIX = re.compile(r"^\s*paragraph\s*:\s*", re.IGNORECASE)


def is_layout_subtree(f: Fact) -> bool:
    """A layout fact with regions (not the counts line, not already a paragraph)."""
    return f.derived_from is None and gives_region(f)


def layout_paragraph_requests(facts: Sequence[Fact], params: SamplingParams = LAYOUT_PARAMS) -> list[LLMRequest]:
    """One request per layout subtree fact, tagged with its fact id."""
    return [LLMRequest.chat(LAYOUT_PROMPT.render_values({"layout": f.text}, strip=False), system=LAYOUT_PROMPT.system,
                            params=params, tag=f.fact_id)
            for f in facts if is_layout_subtree(f)]


def object_names(layout_text: str) -> list[str]:
    """The objects a subtree names, without instance numbers ("person 2" -> "person")."""
    return sorted({re.sub(r" \d+$", "", m["name"].strip()) for m in _NAME.finditer(layout_text)})


def _mentions(text: str, name: str) -> bool:
    """The name, or its singular for a "many" group's plural, as whole words."""
    forms = {name}
    if name.endswith("ies"):
        forms.add(name[:-3] + "y")
    elif name.endswith("s"):
        forms.add(name[:-1])
    return any(re.search(rf"\b{re.escape(f)}(?:s|es)?\b", text, re.IGNORECASE) for f in forms)


def clean_paragraph(fact: Fact, text: str) -> tuple[str, str | None]:
    """(paragraph, None) or ("", reason): one paragraph that names every object of the subtree."""
    paragraph = " ".join(_PREFIX.sub("", " ".join((text or "").replace("**", "").split())).split()).strip('"').strip()
    if len(paragraph) <= MIN_DECLARATIVE_CHARS:
        return "", f"too_short (<= {MIN_DECLARATIVE_CHARS} characters)"
    missing = [n for n in object_names(fact.text) if not _mentions(paragraph, n)]
    if missing:
        return "", f"omits {', '.join(missing)}"
    centres = _CENTRE.findall(fact.text)
    lost = [c for c in centres if c not in paragraph]
    if lost:  # the regions are what grounding prompts and the verifier need
        return "", f"omits {len(lost)} of {len(centres)} centres"
    return paragraph, None


def apply_layout_paragraphs(facts: Sequence[Fact], results: Sequence[LLMResult]) -> list[Fact]:
    """Replace each layout subtree fact by its paragraph, or keep it and say why."""
    return apply_rewrites(facts, results, is_target=is_layout_subtree, clean=clean_paragraph, note=NOTE)

"""Which of the product's prompts a chat request is, and the values its template was filled with.

Built from the product's own prompt files (the Instructify registry and the prompt families), so
a prompt edit changes what is recognised without touching this module: each template becomes an
anchored regular expression whose `{fields}` capture the rendered values.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from visit_assets.lib.instructify.registry import load_registry
from visit_assets.lib.prompts import load_prompts, prompt_dir

# role of each prompt file of the families (file stem -> role)
ROLES = {
    ("instructify_checks", "verify"): "verify",
    ("instructify_checks", "declarative"): "declarative",
    ("instructify_checks", "layout_paragraph"): "layout",
    ("mminstruct", "instruction_generation"): "instruction",
    ("mminstruct", "cluster_merge"): "merge",
    ("mminstruct", "answer_generation"): "answer",
    ("mminstruct", "example_answer"): "example_answer",  # stage 1: the teacher's answers, answered alike
    ("mminstruct", "fit_check"): "fit",
    ("mminstruct", "image_description"): "describe",
    ("selection", "judge_score"): "judge",
    ("selection", "pairwise"): "pairwise",
    ("selection", "pairwise_example"): "pairwise_example",
}
GENERATE = "generate"  # an Instructify conversation prompt of the registry


class UnknownPrompt(ValueError):
    """The request is none of the product's prompts."""


@dataclass(frozen=True)
class Known:
    role: str
    prompt_id: str
    system: str
    pattern: re.Pattern


@dataclass(frozen=True)
class Recognised:
    role: str
    prompt_id: str
    values: dict[str, str]
    images: tuple[str, ...] = ()  # the image URLs (data URIs) of the user message, in order


def template_pattern(template: str) -> re.Pattern:
    """The template with each `{field}` as a named group (a repeated field must repeat its value)."""
    parts, seen = [], set()
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name is None:
            continue
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
        seen.add(name)
    return re.compile("".join(parts), re.DOTALL)


@lru_cache(maxsize=1)
def known_prompts() -> tuple[Known, ...]:
    known = [Known(GENERATE, p.id, p.system.strip(), template_pattern(p.template.strip()))
             for p in load_registry().prompts]
    for (family, stem), role in ROLES.items():
        p = load_prompts(prompt_dir(family), required=[stem])[stem]
        known.append(Known(role, p.id, p.system.strip(), template_pattern(p.template)))
    return tuple(known)


def text_of(content: Any) -> str:
    """A message's text: a string as it is; OpenAI content parts: the text parts joined by newlines
    (as vLLM joins them)."""
    if isinstance(content, list):
        return "\n".join(str(p.get("text") or "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return str(content or "")


def images_of(content: Any) -> tuple[str, ...]:
    """The image URLs of a message's OpenAI content parts (`image_url` parts; none for a string)."""
    if not isinstance(content, list):
        return ()
    out = []
    for p in content:
        if isinstance(p, Mapping) and p.get("type") == "image_url":
            ref = p.get("image_url")
            out.append(str((ref.get("url") if isinstance(ref, Mapping) else ref) or ""))
    return tuple(out)


def recognise(messages: Sequence[Mapping[str, Any]]) -> Recognised:
    system = next((text_of(m.get("content")) for m in messages if m.get("role") == "system"), "").strip()
    last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    user, images = text_of(last), images_of(last)
    for k in known_prompts():
        if k.system != system:
            continue
        m = k.pattern.fullmatch(user.strip()) or k.pattern.fullmatch(user)
        if m:
            return Recognised(k.role, k.prompt_id, {n: v for n, v in m.groupdict().items()}, images)
    raise UnknownPrompt(f"not one of the product's prompts (system starts {system[:60]!r})")

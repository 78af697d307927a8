"""The MM-Instruct prompt templates: versioned YAML files under visit_assets/prompts/mminstruct/.

The loader, `PromptTemplate` and the file format are shared by every prompt family and live in
visit_assets/lib/prompts.py; this module fixes the MM-Instruct folder, the id rule (the id is
"mminstruct." + the file name) and the prompts that must be present. Prompts that show in-context
examples hold `example_template` (fields: `{n}`, the 1-based position, plus `example_variables`)
and `example_separator`; the rendered examples fill `{examples}`. Every row an LLM stage writes
should record `prompt.lineage()` (id, version and a fingerprint of the text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visit_assets.lib import prompts as _shared
from visit_assets.lib.prompts import PromptError, PromptTemplate, prompt_dir, template_fields

__all__ = [
    "PROMPTS_DIR", "ID_PREFIX", "INSTRUCTION_GENERATION", "CLUSTER_MERGE", "ANSWER_GENERATION", "FIT_CHECK",
    "EXAMPLE_ANSWER", "IMAGE_DESCRIPTION",
    "PROMPT_NAMES", "PromptError", "PromptTemplate", "template_fields", "parse_prompt", "load_prompt", "load_prompts",
]

PROMPTS_DIR = prompt_dir("mminstruct")
ID_PREFIX = "mminstruct."

INSTRUCTION_GENERATION = "instruction_generation"
CLUSTER_MERGE = "cluster_merge"
ANSWER_GENERATION = "answer_generation"
FIT_CHECK = "fit_check"
EXAMPLE_ANSWER = "example_answer"  # stage 1 of the two-stage answering (examples.py)
IMAGE_DESCRIPTION = "image_description"  # the paper's description of an image by a VLM (sent with LLMRequest.images)
PROMPT_NAMES = (INSTRUCTION_GENERATION, CLUSTER_MERGE, ANSWER_GENERATION, FIT_CHECK, EXAMPLE_ANSWER,
                IMAGE_DESCRIPTION)


def parse_prompt(raw: Any, name: str, path: str = "") -> PromptTemplate:
    return _shared.parse_prompt(raw, name, path, id_prefix=ID_PREFIX)


def load_prompt(name: str, directory: str | Path | None = None) -> PromptTemplate:
    return _shared.load_prompt(name, directory or PROMPTS_DIR, id_prefix=ID_PREFIX)


def load_prompts(directory: str | Path | None = None) -> dict[str, PromptTemplate]:
    """Every MM-Instruct prompt by name; all of PROMPT_NAMES must be present."""
    return _shared.load_prompts(directory or PROMPTS_DIR, required=PROMPT_NAMES, id_prefix=ID_PREFIX)

"""MM-Instruct's description stage: a vision-language model describes the image ("Describe the
image in detail", the paper's prompt to CogVLM, section 3.1), where the metadata alone is thin.

The paper describes every image with a VLM; this product writes descriptions from the metadata
(lib/metadata/describe.py), which is rich for annotated sets (COCO: captions and boxes) and thin
for web sets (one alt-text caption). `Rule` says which images a VLM describes: `thin` (default)
those with at most `thin_max_facts` facts, `always` every image (the paper), `never` none. The VLM's
text comes first in the description and the metadata's text follows it, so a caption is kept
(MM-Instruct merged DataComp's alt-text with the generated caption for the same reason).
A VLM description passes the answers' filters (refusal, truncation, repetition, too short)
before it is used; a failed one leaves the metadata description as it was, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from visit_assets.lib.llm.types import ERROR as LLM_ERROR
from visit_assets.lib.llm.types import ImageInput, LLMRequest, LLMResult, SamplingParams
from visit_assets.lib.mminstruct.filters import check_answer
from visit_assets.lib.mminstruct.prompts import IMAGE_DESCRIPTION, PromptTemplate, load_prompt
from visit_assets.lib.mminstruct.rng import derive_seed

STAGE = "describe"
Rule = Literal["thin", "always", "never"]  # VlmDescriptionConfig.rule
THIN_MAX_FACTS = 1  # a single caption (an alt-text) or less: what web-scale sets give
DESCRIPTION_PARAMS = SamplingParams(temperature=0.2, top_p=0.95, max_tokens=512)
MIN_WORDS = 12  # shorter is not "in detail"
UNREADABLE = "image_unreadable"


def wants_vlm(rule: Rule, n_facts: int, thin_max_facts: int = THIN_MAX_FACTS) -> bool:
    """Whether `rule` has the VLM describe an image with `n_facts` facts in its metadata."""
    return rule == "always" or (rule == "thin" and n_facts <= thin_max_facts)


@dataclass(frozen=True)
class DescriptionJob:
    image_id: str
    rng_seed: int
    request: LLMRequest
    prompt: PromptTemplate

    def lineage(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "rng_seed": self.rng_seed, **self.prompt.lineage()}


def description_requests(images: Iterable[tuple[str, ImageInput]], seed: int, *,
                         params: SamplingParams = DESCRIPTION_PARAMS) -> list[DescriptionJob]:
    """One request per (image id, image); the cache key holds the image's content hash, so the same
    picture under another id or path is not described twice."""
    prompt = load_prompt(IMAGE_DESCRIPTION)
    jobs = []
    for image_id, image in images:
        rng_seed = derive_seed(STAGE, image.sha256, seed)
        request = prompt.request(params=replace(params, seed=rng_seed), tag=image_id, images=(image,))
        jobs.append(DescriptionJob(image_id, rng_seed, request, prompt))
    return jobs


def description_row(job: DescriptionJob, result: LLMResult) -> dict[str, Any]:
    """The VLM's description, `kept` or the first filter reason, with the call's lineage."""
    reason = "llm_error" if result.status == LLM_ERROR else check_answer(
        result.text, "length" if result.status == "truncated" else result.finish_reason, min_words=MIN_WORDS)
    return {**job.lineage(), "vlm_description": (result.text or "").strip(), "filter_reason": reason,
            "kept": reason is None, **result.row_fields()}


def unreadable_row(image_id: str, error: str) -> dict[str, Any]:
    """An image the VLM was to describe but whose file could not be read: recorded, not lost."""
    return {"image_id": image_id, "vlm_description": "", "filter_reason": UNREADABLE, "kept": False,
            "llm_error": error}


def combined(vlm_text: str, metadata_text: str) -> str:
    """The VLM's description, then what the metadata says."""
    return f"{vlm_text.strip()}\n\n{metadata_text}" if metadata_text else vlm_text.strip()

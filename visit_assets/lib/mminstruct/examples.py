"""Stage 1 of MM-Instruct's two-stage answering (section 2.2): a stronger model writes answers for
each merged instruction once, and those become the instruction's in-context examples when the
open model answers at scale (stage 2, answer.py).

Which images: the paper does not say. Here each instruction gets the `per_instruction` images most
similar to it (the same similarity the matcher samples from), so the examples are for images the
instruction fits. The default is 3, one more than stage 2 shows (N_ANSWER_EXAMPLES = 2): an image
that is itself one of its instruction's example images is answered with the two others.
Ties go to the lower image id, so the choice does not depend on the order shards are read in.
Each answer passes the same filters as stage 2's answers before it may serve as an example.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from visit_assets.lib.ids import content_hash
from visit_assets.lib.llm.types import ERROR as LLM_ERROR
from visit_assets.lib.llm.types import LLMRequest, LLMResult, SamplingParams
from visit_assets.lib.mminstruct.answer import ANSWER_PARAMS, AnswerExample
from visit_assets.lib.mminstruct.filters import check_answer
from visit_assets.lib.mminstruct.prompts import EXAMPLE_ANSWER, PromptTemplate, load_prompt
from visit_assets.lib.mminstruct.rng import derive_seed

STAGE = "example"
EXAMPLES_PER_INSTRUCTION = 3


class BestImages:
    """The `m` images most similar to each of `n` instructions, fed one chunk of images at a time
    (a dataset's shards), so no more than a chunk's similarities are held at once."""

    def __init__(self, n_instructions: int, m: int):
        if m < 1:
            raise ValueError(f"need at least one image per instruction, got {m}")
        self.m = m
        self.sims = np.full((0, n_instructions), -np.inf, dtype=np.float32)
        self.ids = np.empty((0, n_instructions), dtype=object)

    def add(self, image_ids: Sequence[str], sims: np.ndarray) -> None:
        """`sims`: [len(image_ids), n_instructions] similarities of these images to every instruction."""
        sims = np.asarray(sims, dtype=np.float32)
        if sims.shape != (len(image_ids), self.sims.shape[1]):
            raise ValueError(f"similarities of shape {sims.shape} for {len(image_ids)} images and "
                             f"{self.sims.shape[1]} instructions")
        ids = np.repeat(np.asarray(image_ids, dtype=object)[:, None], sims.shape[1], axis=1)
        all_sims, all_ids = np.vstack([self.sims, sims]), np.vstack([self.ids, ids])
        # per instruction (column): highest similarity first, ties to the lower image id
        order = np.lexsort((all_ids.astype(str), -all_sims), axis=0)[: self.m]
        self.sims = np.take_along_axis(all_sims, order, axis=0)
        self.ids = np.take_along_axis(all_ids, order, axis=0)

    def best(self, column: int) -> list[tuple[str, float]]:
        """(image id, similarity) of one instruction, best first."""
        return [(str(i), float(s)) for i, s in zip(self.ids[:, column], self.sims[:, column], strict=True)
                if np.isfinite(s)]


@dataclass(frozen=True)
class ExampleJob:
    instruction_id: str
    instruction: str
    image_id: str
    description: str
    similarity: float
    rng_seed: int
    request: LLMRequest
    prompt: PromptTemplate

    def lineage(self) -> dict[str, Any]:
        return {"instruction_id": self.instruction_id, "image_id": self.image_id, "similarity": self.similarity,
                "rng_seed": self.rng_seed, **self.prompt.lineage()}


def example_requests(pairs: Iterable[Mapping[str, Any]], seed: int, *, params: SamplingParams = ANSWER_PARAMS,
                     prompt: PromptTemplate | None = None) -> list[ExampleJob]:
    """One request per (instruction, image) pair (keys instruction_id, instruction, image_id,
    description, similarity); tag is (instruction_id, image_id)."""
    prompt = prompt or load_prompt(EXAMPLE_ANSWER)
    jobs = []
    for p in pairs:
        key = [str(p["instruction_id"]), str(p["image_id"])]
        rng_seed = derive_seed(STAGE, key, seed)
        request = prompt.request(params=replace(params, seed=rng_seed), tag=tuple(key),
                                 description=str(p["description"]), instruction=str(p["instruction"]))
        jobs.append(ExampleJob(key[0], str(p["instruction"]), key[1], str(p["description"]), float(p["similarity"]),
                               rng_seed, request, prompt))
    return jobs


def example_row(job: ExampleJob, result: LLMResult) -> dict[str, Any]:
    """One stage-1 answer: kept (an example for stage 2) or the first filter reason, with lineage.
    The id is a content hash of what made it (instruction, image, prompt, model, seed)."""
    reason = "llm_error" if result.status == LLM_ERROR else check_answer(
        result.text, "length" if result.status == "truncated" else result.finish_reason)
    model = result.model.label() if result.model else ""
    lineage = job.lineage()
    eid = "stage1-" + content_hash(STAGE, job.instruction_id, job.image_id, lineage["prompt_id"],
                               lineage["prompt_version"], model, job.rng_seed)[:16]
    return {"example_id": eid, **lineage, "instruction": job.instruction, "description": job.description,
            "answer": (result.text or "").strip(), "filter_reason": reason, "kept": reason is None,
            **result.row_fields()}


def bank_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[AnswerExample]:
    """The kept stage-1 answers as instruction-specific examples of the answer bank."""
    return [AnswerExample(str(r["example_id"]), str(r["instruction"]), str(r["description"]), str(r["answer"]),
                          instruction_id=str(r["instruction_id"]), image_id=str(r["image_id"]))
            for r in rows if r.get("kept")]

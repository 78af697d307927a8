"""Stage 4, answers: the LLM answers the matched instruction from the image's description with 2
in-context examples (MM-Instruct section 2.2), and the LLM fit check (section 2.3).

The paper's examples come from a stronger model per instruction (stage 1 of its two-stage
scheme: examples.py, the `instruction_examples` asset). The bank is those instruction-specific
examples (`AnswerExample.instruction_id`) plus `visit_assets/data/answer_examples.yaml`
(hand-written, general): when the bank holds at least n examples for the item's instruction (other
than its own image's), those are used, otherwise the general ones. The n examples are drawn without
replacement with an rng seeded by (image id, instruction id, base seed), also the LLM's sampling seed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from visit_assets.lib.ids import content_hash
from visit_assets.lib.llm.types import ERROR as LLM_ERROR
from visit_assets.lib.llm.types import LLMRequest, LLMResult, SamplingParams
from visit_assets.lib.mminstruct.filters import check_answer, parse_yes_no, to_llava_turns
from visit_assets.lib.mminstruct.prompts import ANSWER_GENERATION, FIT_CHECK, PromptTemplate, load_prompt
from visit_assets.lib.mminstruct.rng import derive_seed, item_rng
from visit_assets.lib.mminstruct.seeds import DATA_DIR

STAGE = "answer"
N_ANSWER_EXAMPLES = 2  # paper: 2 in-context examples for instance generation
DEFAULT_EXAMPLES_PATH = DATA_DIR / "answer_examples.yaml"
ANSWER_PARAMS = SamplingParams(temperature=0.7, top_p=0.95, max_tokens=512)
FIT_PARAMS = SamplingParams(temperature=0.0, max_tokens=4)
_SLUG = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")


@dataclass(frozen=True)
class AnswerExample:
    id: str
    instruction: str
    description: str
    answer: str
    instruction_id: str | None = None  # set for examples written for one specific instruction
    image_id: str | None = None  # the image a stage-1 example answers (examples.py)


@dataclass(frozen=True)
class AnswerItem:
    """One (image, matched instruction) pair to answer."""

    image_id: str
    instruction_id: str
    instruction: str
    description: str


def load_answer_examples(path: str | Path | None = None) -> list[AnswerExample]:
    """The validated example bank (unique slug ids, non-empty fields)."""
    p = Path(path) if path is not None else DEFAULT_EXAMPLES_PATH
    raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    items = raw.get("examples") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        raise ValueError(f"{p}: needs a non-empty `examples` list")
    out: list[AnswerExample] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, it in enumerate(items):
        if not isinstance(it, dict):
            problems.append(f"examples[{i}]: not a mapping")
            continue
        eid = it.get("id")
        if not isinstance(eid, str) or not _SLUG.match(eid):
            problems.append(f"examples[{i}]: id {eid!r} is not a slug")
            continue
        if eid in seen:
            problems.append(f"example {eid!r}: duplicate id")
        seen.add(eid)
        fields = {k: str(it.get(k) or "").strip() for k in ("instruction", "description", "answer")}
        empty = [k for k, v in fields.items() if not v]
        if empty:
            problems.append(f"example {eid!r}: empty {empty}")
            continue
        out.append(AnswerExample(eid, fields["instruction"], fields["description"], fields["answer"],
                                 it.get("instruction_id")))
    if problems:
        raise ValueError(f"{p}: {len(problems)} problem(s):\n- " + "\n- ".join(problems))
    return out


def examples_version(examples: Sequence[AnswerExample]) -> str:
    """Data version of an example bank (content hash, independent of order)."""
    return content_hash("mminstruct.answer_examples",
                        sorted([e.id, e.instruction, e.description, e.answer, e.instruction_id] for e in examples))


def _as_item(x: AnswerItem | Mapping[str, Any]) -> AnswerItem:
    if isinstance(x, AnswerItem):
        return x
    return AnswerItem(str(x["image_id"]), str(x["instruction_id"]), str(x["instruction"]), str(x["description"]))


def pick_examples(item: AnswerItem, bank: Sequence[AnswerExample], seed: int,
                  n: int = N_ANSWER_EXAMPLES) -> tuple[list[AnswerExample], int]:
    """(n distinct examples, the per-item seed). Prefers examples written for the item's instruction,
    never one that answers the item's own image (it would hand the model an answer to copy)."""
    specific = sorted((e for e in bank if e.instruction_id == item.instruction_id and e.image_id != item.image_id),
                      key=lambda e: e.id)
    general = sorted((e for e in bank if e.instruction_id is None), key=lambda e: e.id)
    pool = specific if len(specific) >= n else general if len(general) >= n else sorted(bank, key=lambda e: e.id)
    if len(pool) < n:
        raise ValueError(f"the example bank has {len(pool)} examples, need {n}")
    key = [item.image_id, item.instruction_id]
    picks = item_rng(STAGE, key, seed).choice(len(pool), size=n, replace=False)
    return [pool[int(i)] for i in picks], derive_seed(STAGE, key, seed)


@dataclass(frozen=True)
class AnswerJob:
    item: AnswerItem
    example_ids: tuple[str, ...]
    rng_seed: int
    request: LLMRequest
    prompt: PromptTemplate

    def lineage(self) -> dict[str, Any]:
        return {"image_id": self.item.image_id, "instruction_id": self.item.instruction_id,
                "example_ids": list(self.example_ids), "rng_seed": self.rng_seed, **self.prompt.lineage()}


def answer_requests(
    items: Iterable[AnswerItem | Mapping[str, Any]],
    example_bank: Sequence[AnswerExample],
    seed: int,
    *,
    n_examples: int = N_ANSWER_EXAMPLES,
    params: SamplingParams = ANSWER_PARAMS,
    prompt: PromptTemplate | None = None,
) -> list[AnswerJob]:
    """One AnswerJob per item, in input order; request.tag is (image_id, instruction_id)."""
    prompt = prompt or load_prompt(ANSWER_GENERATION)
    jobs = []
    for raw in items:
        item = _as_item(raw)
        chosen, rng_seed = pick_examples(item, example_bank, seed, n_examples)
        request = prompt.request(
            params=replace(params, seed=rng_seed),
            tag=(item.image_id, item.instruction_id),
            examples=[{"instruction": e.instruction, "description": e.description, "answer": e.answer} for e in chosen],
            description=item.description,
            instruction=item.instruction,
        )
        jobs.append(AnswerJob(item, tuple(e.id for e in chosen), rng_seed, request, prompt))
    return jobs


def answer_row(job: AnswerJob, result: LLMResult, *, min_words: int | None = None) -> dict[str, Any]:
    """One output row: the answer, the first filter reason (None = kept) and lineage."""
    reason: str | None
    if result.status == LLM_ERROR:
        reason = "llm_error"
    else:
        kw: dict[str, Any] = {} if min_words is None else {"min_words": min_words}
        reason = check_answer(result.text, result.finish_reason if result.status != "truncated" else "length", **kw)
    return {
        **job.lineage(),
        "answer": result.text.strip(),
        "filter_reason": reason,
        "kept": reason is None,
        **result.row_fields(),
    }


# -- fit check ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitJob:
    item: AnswerItem
    request: LLMRequest
    prompt: PromptTemplate

    def lineage(self) -> dict[str, Any]:
        return {"image_id": self.item.image_id, "instruction_id": self.item.instruction_id, **self.prompt.lineage()}


def fit_requests(
    items: Iterable[AnswerItem | Mapping[str, Any]], *, params: SamplingParams = FIT_PARAMS,
    prompt: PromptTemplate | None = None,
) -> list[FitJob]:
    """One greedy yes/no request per (image, instruction); tag is (image_id, instruction_id)."""
    prompt = prompt or load_prompt(FIT_CHECK)
    jobs = []
    for raw in items:
        item = _as_item(raw)
        req = prompt.request(params=params, tag=(item.image_id, item.instruction_id), description=item.description,
                             instruction=item.instruction)
        jobs.append(FitJob(item, req, prompt))
    return jobs


def fit_row(job: FitJob, result: LLMResult) -> dict[str, Any]:
    """`fits` is True / False, or None when the reply was not a clear yes or no (drop those too)."""
    fits = parse_yes_no(result.text) if result.status != LLM_ERROR else None
    return {**job.lineage(), "fits": fits, **result.row_fields()}


RECIPE = "mm-instruct"


def conversation_row(job: AnswerJob, result: LLMResult, image_key: str, seed: int) -> dict[str, Any] | None:
    """The answer as a conversation row shared with the Instructify recipe, or None when the LLM
    gave no text (the asset records those as attempts). The id is a content hash of its inputs."""
    answer = (result.text or "").strip()
    if result.status == LLM_ERROR or not answer:
        return None
    model = result.model.label() if result.model else ""
    lineage = job.lineage()
    cid = content_hash(job.item.image_id, RECIPE, lineage["prompt_id"], lineage["prompt_version"], model,
                       job.item.instruction_id, seed)
    return {
        "conversation_id": cid, "image_id": job.item.image_id, "image_key": image_key, "recipe": RECIPE,
        "prompt_id": lineage["prompt_id"], "prompt_version": lineage["prompt_version"], "seed": seed, "model": model,
        "instruction_id": job.item.instruction_id, "example_ids": list(job.example_ids),
        "turns": to_llava_turns(job.item.instruction, answer), "finish_reason": result.finish_reason,
        "llm_status": result.status, "generation_cache_key": result.cache_key,
    }

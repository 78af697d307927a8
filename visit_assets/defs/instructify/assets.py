"""Instructify domain: grouped metadata -> image_facts (the conversations are in defs/conversations)."""

from dataclasses import replace
from typing import Literal

import dagster as dg
import polars as pl

from ...lib.code_version import code_version
from ...lib.frames import rows_frame
from ...lib.ids import content_hash
from ...lib.instructify import facts as facts_mod
from ...lib.instructify import layout_paragraphs as layout_mod
from ...lib.llm.types import LLMRequest
from ...lib.metadata.pipeline import lineage_columns
from ...lib.storage import Parent
from ..llm.pools import llm_pool
from ..llm.resources import GENERATOR, LLMResource
from ..llm.retries import LLM_RETRY_POLICY, retry_only_transient
from ..metadata import counts_by, frame_metadata, preview, required_columns, required_columns_spec, stored
from ..partitions import dataset_and_shard, image_partitions
from ..waves import REGENERATED

FACTS_VERSION = code_version(facts_mod, layout_mod, files=(
    "prompts/instructify_checks/declarative.yaml", "prompts/instructify_checks/layout_paragraph.yaml"))


class ImageFactsConfig(dg.Config):
    # tree: the layout as lines (positions, sizes, containment); paragraphs: the LLM also rewrites each
    # layout subtree as a paragraph, as Instructify's reference does (kept only if it names every object)
    layout_text: Literal["tree", "paragraphs"] = "tree"
    layout_max_tokens: int = layout_mod.LAYOUT_PARAMS.max_tokens


def _layout_requests(facts: list, config: ImageFactsConfig) -> list[LLMRequest]:
    if config.layout_text != "paragraphs":
        return []
    params = replace(layout_mod.LAYOUT_PARAMS, max_tokens=config.layout_max_tokens)
    return layout_mod.layout_paragraph_requests(facts, params)


def _rewritten(facts: list, results: list, config: ImageFactsConfig) -> list:
    """The record's facts with their LLM rewrites applied (QA, and layout when asked for)."""
    if not results:
        return facts
    facts = facts_mod.apply_declarative(facts, results)
    return layout_mod.apply_layout_paragraphs(facts, results) if config.layout_text == "paragraphs" else facts


def _layout_outcomes(frame: pl.DataFrame) -> dict[str, int]:
    """Layout subtrees kept as paragraphs, and those that fell back, by reason (object facts with a note)."""
    return counts_by(frame.filter((pl.col("kind") == "object") & pl.col("note").is_not_null()), "note")


@dg.asset(partitions_def=image_partitions, code_version=FACTS_VERSION,
          group_name="instructify", tags=REGENERATED, kinds={"parquet"}, pool=llm_pool(GENERATOR),
          retry_policy=LLM_RETRY_POLICY, check_specs=[required_columns_spec("image_facts")])
@retry_only_transient
def image_facts(context: dg.AssetExecutionContext, config: ImageFactsConfig, llm: LLMResource,
                grouped_metadata: Parent):
    """Each image's metadata as numbered facts: captions, a box layout, QA rewritten as statements by the LLM, OCR."""
    dataset, shard = dataset_and_shard(context)
    parent = grouped_metadata.pointer
    records = grouped_metadata.read().to_dicts()
    base = [facts_mod.facts_for(r) for r in records]  # built once: the layout requests and the rows use them
    qa = [facts_mod.qa_to_declarative_requests(r) for r in records]
    per_record = [q + _layout_requests(f, config) for q, f in zip(qa, base, strict=True)]  # tagged by fact id
    requests = [q for qs in per_record for q in qs]
    results, llm_meta = llm.run_batch(context, requests, label="fact rewrites") if requests else ([], {})
    rows, start = [], 0
    for r, facts, qs in zip(records, base, per_record, strict=True):
        mine, start = results[start:start + len(qs)], start + len(qs)  # one batch, sliced back per image
        rows += [{**fact.as_dict(), "image_key": r["image_key"], "shard": shard} for fact in _rewritten(facts, mine, config)]
    model = llm.get_client().identity
    version = content_hash(parent["data_version"], FACTS_VERSION, model.as_dict() if requests else None,
                           config.model_dump())
    paragraphs = config.layout_text == "paragraphs"
    frame = rows_frame(rows, [*lineage_columns(dataset, parent["dataset_version"], FACTS_VERSION),
                              pl.lit(facts_mod.DECLARATIVE_PROMPT_VERSION).alias("declarative_prompt_version"),
                              pl.lit(layout_mod.LAYOUT_PROMPT_VERSION if paragraphs else None, pl.Int64)
                              .alias("layout_prompt_version")])
    return stored(frame, version, dataset_version=parent["dataset_version"], code_version=FACTS_VERSION,
                  check_results=[required_columns("image_facts", frame)], metadata={
        **frame_metadata(frame), "facts_by_kind": counts_by(frame, "kind") if rows else {},
        "qa_rewrites": sum(map(len, qa)),
        "layout_paragraphs": _layout_outcomes(frame) if paragraphs and rows else {},
        "preview": preview(frame, ["image_key", "kind", "text", "note"]), **llm_meta,
    })

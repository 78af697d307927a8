"""Instructify domain: grouped metadata -> image_facts (the conversations are in defs/conversations)."""

import dagster as dg
import polars as pl

from ...lib.code_version import code_version
from ...lib.frames import rows_frame
from ...lib.ids import content_hash
from ...lib.instructify import facts as facts_mod
from ...lib.metadata.pipeline import lineage_columns
from ..llm.pools import llm_pool
from ..llm.resources import GENERATOR, LLMResource
from ..llm.retries import LLM_RETRY_POLICY, retry_only_transient
from ..metadata import counts_by, preview
from ..partitions import dataset_and_shard, image_partitions
from ..resources import StoreResource
from ..waves import REGENERATED

FACTS_VERSION = code_version(facts_mod, files=("prompts/instructify_checks/declarative.yaml",))


@dg.asset(partitions_def=image_partitions, deps=["grouped_metadata"], code_version=FACTS_VERSION,
          group_name="instructify", tags=REGENERATED, kinds={"parquet"}, pool=llm_pool(GENERATOR),
          retry_policy=LLM_RETRY_POLICY)
@retry_only_transient
def image_facts(context: dg.AssetExecutionContext, store: StoreResource, llm: LLMResource) -> dg.MaterializeResult:
    """Each image's metadata as numbered facts: captions, a box layout, QA rewritten as statements by the LLM, OCR."""
    dataset, shard = dataset_and_shard(context)
    parquet = store.store()
    parent = parquet.pointer("grouped_metadata", dataset, shard)
    records = parquet.read("grouped_metadata", dataset, shard).to_dicts()
    per_record = [facts_mod.qa_to_declarative_requests(r) for r in records]
    requests = [q for qs in per_record for q in qs]
    results, llm_meta = llm.run_batch(context, requests, label="declarative QA") if requests else ([], {})
    rows, start = [], 0
    for r, qs in zip(records, per_record, strict=True):
        mine, start = results[start:start + len(qs)], start + len(qs)  # one batch, sliced back per image
        facts = facts_mod.facts_for(r)
        for fact in facts_mod.apply_declarative(facts, mine) if mine else facts:
            rows.append({**fact.as_dict(), "image_key": r["image_key"], "shard": shard})
    model = llm.get_client().identity
    version = content_hash(parent["data_version"], FACTS_VERSION, model.as_dict() if requests else None)
    frame = rows_frame(rows, [*lineage_columns(dataset, parent["dataset_version"], FACTS_VERSION),
                          pl.lit(facts_mod.DECLARATIVE_PROMPT_VERSION).alias("declarative_prompt_version")])
    parquet.write("image_facts", dataset, version, frame, shard, dataset_version=parent["dataset_version"],
                  code_version=FACTS_VERSION)
    return dg.MaterializeResult(data_version=dg.DataVersion(version), metadata={
        "dagster/row_count": frame.height, "facts_by_kind": counts_by(frame, "kind") if rows else {},
        "qa_rewrites": len(requests), "preview": preview(frame, ["image_key", "kind", "text", "note"]), **llm_meta,
    })

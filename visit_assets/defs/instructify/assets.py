"""Instructify domain: grouped metadata -> image_facts -> generated_conversations (+ attempts) -> visit_export."""

import json

import dagster as dg
import polars as pl

from ... import settings
from ...lib.code_version import code_version
from ...lib.ids import content_hash, stable_json
from ...lib.instructify import export as export_mod
from ...lib.instructify import facts as facts_mod
from ...lib.instructify import parse as parse_mod
from ...lib.instructify import registry as registry_mod
from ...lib.instructify import sampling as sampling_mod
from ...lib.llm import SamplingParams
from ...lib.metadata.pipeline import lineage_columns
from ..automation import follow_parents
from ..llm.resources import LLMResource
from ..llm.rounds import LLMRounds
from ..metadata import counts_by, preview
from ..partitions import dataset_and_shard, dataset_partitions, from_dataset, image_partitions, shard_partitions
from ..resources import StoreResource
from . import checks

FACTS_VERSION = code_version(facts_mod)
SAMPLING_VERSION = code_version(sampling_mod, parse_mod, registry_mod, facts_mod)
EXPORT_VERSION = code_version(export_mod)


class SamplingRunConfig(dg.Config):
    """The loop's knobs; defaults are the reference implementation's (see docs/instructify.md)."""

    seed: int = 0
    stop_fraction: float = 0.85
    max_failures: int = 3
    max_iterations: int = 10
    temperature: float = 0.2
    max_tokens: int = 1000
    consume: str = "lexical"
    prompt_weights: dict[str, float] = {}  # prompt id -> weight; empty keeps the registry's weights

    def sampling(self) -> sampling_mod.SamplingConfig:
        return sampling_mod.SamplingConfig(
            stop_fraction=self.stop_fraction, max_failures=self.max_failures, max_iterations=self.max_iterations,
            generation=SamplingParams(temperature=self.temperature, max_tokens=self.max_tokens), consume=self.consume)


def _frame(rows: list[dict], lineage: list[pl.Expr]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame({"image_id": []}, schema={"image_id": pl.String})
    return frame.with_columns(*lineage)


@dg.asset(partitions_def=image_partitions, deps=["grouped_metadata"], code_version=FACTS_VERSION,
          group_name="instructify", automation_condition=follow_parents, kinds={"parquet"}, pool="gpu")
def image_facts(context: dg.AssetExecutionContext, store: StoreResource, llm: LLMResource) -> dg.MaterializeResult:
    """Each image's metadata as numbered facts: captions, a box layout, QA rewritten as statements by the LLM, OCR."""
    dataset, shard = dataset_and_shard(context)
    parquet = store.store()
    parent = parquet.current("grouped_metadata", dataset, shard)
    records = parquet.read("grouped_metadata", dataset, shard).to_dicts()
    base = {r["image_id"]: facts_mod.facts_for(r) for r in records}
    requests = [q for r in records for q in facts_mod.qa_to_declarative_requests(r)]
    results, llm_meta = llm.run_batch(context, requests, label="declarative QA") if requests else ([], {})
    rows = []
    for r in records:
        for fact in facts_mod.apply_declarative(base[r["image_id"]], results) if results else base[r["image_id"]]:
            rows.append({**fact.as_dict(), "image_key": r["image_key"], "shard": shard})
    model = llm.get_client().identity
    version = content_hash(parent["data_version"], FACTS_VERSION, model.as_dict() if requests else None)
    frame = _frame(rows, [*lineage_columns(dataset, parent["dataset_version"], FACTS_VERSION),
                          pl.lit(facts_mod.DECLARATIVE_PROMPT_VERSION).alias("declarative_prompt_version")])
    parquet.write("image_facts", dataset, version, frame, shard, dataset_version=parent["dataset_version"],
                  code_version=FACTS_VERSION)
    return dg.MaterializeResult(data_version=dg.DataVersion(version), metadata={
        "dagster/row_count": frame.height, "facts_by_kind": counts_by(frame, "kind") if rows else {},
        "qa_rewrites": len(requests), "preview": preview(frame, ["image_key", "kind", "text", "note"]), **llm_meta,
    })


@dg.multi_asset(
    specs=[
        dg.AssetSpec("generated_conversations", deps=["image_facts"], group_name="instructify",
                     description="Conversations in LLaVA turns, one row each, with recipe, prompt, model and seed.",
                     automation_condition=follow_parents, kinds={"parquet"}),
        dg.AssetSpec("conversation_attempts", deps=["image_facts"], group_name="instructify",
                     description="Every sampling iteration's outcome per image (accepted / rejected and why) "
                                 "plus one 'stopped' row per image naming the stop rule.",
                     automation_condition=follow_parents, kinds={"parquet"}),
    ],
    partitions_def=image_partitions, check_specs=checks.conversation_check_specs, code_version=SAMPLING_VERSION,
    pool="gpu",
)
def generated_conversations(context: dg.AssetExecutionContext, config: SamplingRunConfig, store: StoreResource,
                            llm: LLMResource):
    dataset, shard = dataset_and_shard(context)
    parquet = store.store()
    parent = parquet.current("image_facts", dataset, shard)
    facts = parquet.read("image_facts", dataset, shard)
    records = [{"image_id": iid, "image_key": group["image_key"][0], "facts": group.drop("image_key").to_dicts()}
               for (iid,), group in facts.group_by("image_id", maintain_order=True)] if facts.height else []
    registry = registry_mod.load_registry(weights=config.prompt_weights or None)
    generate = LLMRounds(context, llm, "instructify")
    conversations, attempts = sampling_mod.sample_conversations(records, registry, generate, config.sampling(), config.seed)
    model = llm.get_client().identity
    run_fields = {"dataset": dataset, "dataset_version": parent["dataset_version"]}
    lineage = [*lineage_columns(dataset, parent["dataset_version"], SAMPLING_VERSION), pl.lit(shard).alias("shard"),
               pl.lit(model.name).alias("llm_model"), pl.lit(model.weights).alias("llm_weights"),
               pl.lit(stable_json(config.sampling().as_dict())).alias("sampling_config")]
    conv_frame, attempt_frame = _frame(conversations, lineage), _frame(attempts, lineage)
    version = content_hash(parent["data_version"], SAMPLING_VERSION, model.as_dict(), config.model_dump(), run_fields)
    for name, frame in (("generated_conversations", conv_frame), ("conversation_attempts", attempt_frame)):
        parquet.write(name, dataset, version, frame, shard, dataset_version=parent["dataset_version"],
                      code_version=SAMPLING_VERSION)
    summary = sampling_mod.summarize(conversations, attempts)
    llm_meta = generate.metadata()
    pairs = max(summary["pairs"], 1)
    yield dg.MaterializeResult(asset_key="generated_conversations", data_version=dg.DataVersion(version), metadata={
        "dagster/row_count": conv_frame.height, "conversations_per_image": round(len(conversations) / max(len(records), 1), 2),
        "tokens_out_per_accepted_pair": round(llm_meta.get("llm_tokens_out", 0) / pairs, 1),
        "conversations_by_prompt": summary["conversations_by_prompt"],
        "preview": preview(conv_frame, ["image_key", "prompt_id", "turns"]), **llm_meta,
    })
    yield dg.MaterializeResult(asset_key="conversation_attempts", data_version=dg.DataVersion(version), metadata={
        "dagster/row_count": attempt_frame.height, "iterations": summary["iterations"], "accepted": summary["accepted"],
        "rejected_by_reason": summary["rejected_by_reason"], "stopped_by_reason": summary["stopped_by_reason"],
    })
    yield checks.every_image_accounted_for([r["image_id"] for r in records], attempt_frame)
    yield checks.unique_conversation_ids(conv_frame)


@dg.asset(partitions_def=dataset_partitions, code_version=EXPORT_VERSION, group_name="instructify", kinds={"json"},
          deps=[dg.AssetDep("generated_conversations", partition_mapping=from_dataset)])
def visit_export(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    """LLaVA JSON of the dataset's conversations, in a new folder per content version (never overwritten)."""
    dataset = context.partition_key
    parquet = store.store()
    shards = [int(s) for s in shard_partitions.get_partition_keys()]
    frame = pl.concat([parquet.read("generated_conversations", dataset, s) for s in shards], how="diagonal_relaxed")
    conversations = frame.to_dicts() if "conversation_id" in frame.columns else []
    items = export_mod.to_llava(conversations)
    fields = {"dataset": dataset, "dataset_versions": sorted(set(frame["dataset_version"])) if frame.height else [],
              **export_mod.export_summary(conversations)}
    manifest = export_mod.write_export(items, settings.home() / "exports" / dataset, fields)
    rows = pl.DataFrame({"conversation_id": [i["id"] for i in items], "image": [i["image"] for i in items]},
                        schema={"conversation_id": pl.String, "image": pl.String})
    parquet.write("visit_export", dataset, manifest["version"], rows.with_columns(
        pl.lit(dataset).alias("dataset"), pl.lit(manifest["version"]).alias("export_version")),
        export_version=manifest["version"])
    folder = settings.home() / "exports" / dataset / manifest["version"]
    return dg.MaterializeResult(data_version=dg.DataVersion(manifest["version"]), metadata={
        "dagster/row_count": len(items), "export_folder": dg.MetadataValue.path(str(folder)),
        "manifest": dg.MetadataValue.json(json.loads(json.dumps(manifest, default=str))),
    })

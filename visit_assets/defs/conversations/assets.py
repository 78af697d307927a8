"""Conversations domain, shared by both recipes: generated_conversations (+ attempts) ->
filtered_conversations (+ rejects) -> visit_export (of the selected subset, or of every filtered
conversation: its run config)."""

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Literal

import dagster as dg
import polars as pl

from ...lib import versions as versions_mod
from ...lib.code_version import code_version
from ...lib.frames import rows_frame
from ...lib.ids import content_hash, stable_json
from ...lib.instructify import export as export_mod
from ...lib.instructify import facts as facts_mod
from ...lib.instructify import parse as parse_mod
from ...lib.instructify import registry as registry_mod
from ...lib.instructify import sampling as sampling_mod
from ...lib.llm import SamplingParams
from ...lib.metadata.pipeline import lineage_columns
from ...lib.mminstruct import answer as answer_mod
from ...lib.mminstruct import diversity as diversity_mod
from ...lib.mminstruct import examples as examples_mod
from ...lib.mminstruct import filters as filters_mod
from ...lib.models import identity as identity_mod
from ...lib.storage import Parent, safe_name
from ..llm.pools import llm_pool
from ..llm.resources import GENERATOR, LLMResource
from ..llm.retries import LLM_RETRY_POLICY, retry_only_transient
from ..llm.rounds import LLMRounds
from ..metadata import (
    counts_by,
    frame_metadata,
    preview,
    required_columns,
    required_columns_spec,
    stored,
    stored_spec,
    viewer_link,
)
from ..partitions import dataset_and_shard, dataset_partitions, from_dataset, image_partitions, shard_partitions
from ..resources import StoreResource
from ..waves import REGENERATED
from . import checks

GENERATION_VERSION = code_version(sampling_mod, parse_mod, registry_mod, facts_mod, answer_mod, examples_mod, files=(
    "prompts/instructify/*", "prompts/instructify_checks/verify.yaml", "prompts/mminstruct/answer_generation.yaml",
    "data/answer_examples.yaml"))
FILTER_VERSION = code_version(filters_mod, answer_mod, files=("prompts/mminstruct/fit_check.yaml",))
EXPORT_VERSION = code_version(export_mod, versions_mod, identity_mod)  # identity: NOT_REAL names the not-real models


class GenerationConfig(dg.Config):
    """Instructify's loop knobs (defaults: the reference implementation's) and the MM-Instruct answer seed."""

    seed: int = 0
    stop_fraction: float = 0.85
    max_failures: int = 3
    max_iterations: int = 10
    temperature: float = 0.2
    max_tokens: int = 1000
    consume: sampling_mod.Consume = "lexical"
    prompt_profile: str = "instructify"  # the mix of prompt types: instructify (every type) | llava (LLaVA-158K's only)
    prompt_weights: dict[str, float] = {}  # prompt id -> weight, over the profile's; empty keeps the profile's
    answer_max_tokens: int = answer_mod.ANSWER_PARAMS.max_tokens  # MM-Instruct answers
    # Groups of images whose rounds run at once, so the loop's own work overlaps requests in flight
    # (docs/benchmarks.md, "Overhead against model time"). 0: two for an endpoint (openai backend), one
    # for a model in this process (llama.cpp, vLLM), whose batches lanes would only halve.
    lanes: int = 0

    def sampling(self) -> sampling_mod.SamplingConfig:
        return sampling_mod.SamplingConfig(
            stop_fraction=self.stop_fraction, max_failures=self.max_failures, max_iterations=self.max_iterations,
            generation=SamplingParams(temperature=self.temperature, max_tokens=self.max_tokens), consume=self.consume)


def lanes_for(config: GenerationConfig, backend_kind: str) -> int:
    return config.lanes or (2 if backend_kind == "openai" else 1)


def _instructify(image_facts: Parent, config, generate, verify, lanes):
    facts = image_facts.read()
    records = [{"image_id": iid, "image_key": group["image_key"][0], "facts": group.drop("image_key").to_dicts()}
               for (iid,), group in facts.group_by("image_id", maintain_order=True)] if facts.height else []
    registry = registry_mod.load_registry(weights=config.prompt_weights or None, profile=config.prompt_profile)
    conversations, attempts = sampling_mod.sample_conversations(records, registry, generate, config.sampling(),
                                                                config.seed, verify=verify, lanes=lanes)
    return records, conversations, attempts


def _mminstruct(context, parents: dict[str, Parent], config, generate) -> tuple[list[dict], list[dict]]:
    """Answers to each image's sampled instruction; an LLM failure is an attempt row, never lost."""
    if not parents["instruction_matches"].exists:
        context.log.warning("instruction_matches is not materialized for this partition: MM-Instruct answers skipped")
        return [], []
    matches = parents["instruction_matches"].read()
    if not matches.height:
        return [], []
    described = parents["image_descriptions"].read().select("image_id", "image_key", "description")
    items = matches.select("image_id", "instruction_id", "instruction").join(described, on="image_id")
    params = replace(answer_mod.ANSWER_PARAMS, max_tokens=config.answer_max_tokens)
    bank = answer_mod.load_answer_examples() + _stage_one_examples(parents["instruction_examples"])
    jobs = answer_mod.answer_requests(items.to_dicts(), bank, config.seed, params=params)
    keys = dict(zip(items["image_id"], items["image_key"], strict=True))
    conversations, attempts = [], []
    for job, result in zip(jobs, generate([j.request for j in jobs]), strict=True):
        row = answer_mod.conversation_row(job, result, keys[job.item.image_id], config.seed)
        status = "accepted" if row else "rejected"
        attempts.append({"image_id": job.item.image_id, "image_key": keys[job.item.image_id], "recipe": answer_mod.RECIPE,
                         "iteration": 0, "status": status, "reason": None if row else f"llm_{result.status}",
                         "generation_cache_key": result.cache_key, **job.prompt.lineage()})
        if row:
            conversations.append(row)
    return conversations, attempts


def _stage_one_examples(instruction_examples: Parent) -> list[answer_mod.AnswerExample]:
    """The teacher's kept answers (instruction_examples): each instruction's own in-context examples."""
    if not instruction_examples.exists:
        return []
    return examples_mod.bank_from_rows(instruction_examples.read().to_dicts())


GENERATION_DEPS: list[str | dg.AssetDep] = ["image_facts", "instruction_matches", "image_descriptions",
                   dg.AssetDep("instruction_examples", partition_mapping=from_dataset)]


@dg.multi_asset(
    specs=[
        stored_spec("generated_conversations", deps=GENERATION_DEPS,
                     description="Conversations of both recipes in LLaVA turns, one row each: recipe, prompt, model, seed.",
                     tags=REGENERATED, kinds={"parquet"}, group_name="conversations"),
        stored_spec("conversation_attempts", deps=GENERATION_DEPS,
                     description="Every generation attempt per image (accepted / rejected and why), plus one "
                                 "'stopped' row per image naming Instructify's stop rule.",
                     tags=REGENERATED, kinds={"parquet"}, group_name="conversations"),
    ],
    partitions_def=image_partitions, check_specs=checks.conversation_check_specs, code_version=GENERATION_VERSION,
    pool=llm_pool(GENERATOR, "checker"), retry_policy=LLM_RETRY_POLICY,
)
@retry_only_transient
def generated_conversations(context: dg.AssetExecutionContext, config: GenerationConfig, llm: LLMResource,
                            image_facts: Parent, instruction_matches: Parent, image_descriptions: Parent,
                            instruction_examples: Parent):
    dataset, shard = dataset_and_shard(context)
    parent = image_facts.pointer
    generate = LLMRounds(context, llm, "conversations")
    checker = llm.role("checker")
    verify = LLMRounds(context, checker, "verification", shares=generate)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mminstruct-answers") as pool:
        # MM-Instruct's one batch runs beside Instructify's rounds: the server never waits for either
        mm = pool.submit(_mminstruct, context, {"instruction_matches": instruction_matches, "image_descriptions":
                                                image_descriptions, "instruction_examples": instruction_examples},
                         config, generate)
        lanes = lanes_for(config, llm.get_client().backend.kind)
        records, conversations, attempts = _instructify(image_facts, config, generate, verify, lanes)
        mm_conversations, mm_attempts = mm.result()
    summary = sampling_mod.summarize(conversations, attempts)  # Instructify's own accounting
    conversations, attempts = conversations + mm_conversations, attempts + mm_attempts
    model = llm.get_client().identity
    lineage = [*lineage_columns(dataset, parent["dataset_version"], GENERATION_VERSION), pl.lit(shard).alias("shard"),
               pl.lit(model.name).alias("llm_model"), pl.lit(model.weights).alias("llm_weights"),
               pl.lit(stable_json(config.sampling().as_dict())).alias("sampling_config")]
    conv_frame = rows_frame(conversations, lineage)  # each recipe's rows name their recipe
    attempt_frame = rows_frame(attempts, lineage)
    if "recipe" in attempt_frame.columns:
        attempt_frame = attempt_frame.with_columns(pl.col("recipe").fill_null(sampling_mod.RECIPE))
    matches, stage_one = instruction_matches.current(), instruction_examples.current()
    version = content_hash(parent["data_version"], matches and matches["data_version"],
                           *([stage_one["data_version"]] if stage_one else []), GENERATION_VERSION,
                           model.as_dict(), checker.get_client().identity.as_dict(), config.model_dump(exclude={"lanes"}))
    lineage_fields = {"dataset_version": parent["dataset_version"], "code_version": GENERATION_VERSION}
    llm_meta = generate.metadata()
    yield stored(conv_frame, version, asset_key="generated_conversations", **lineage_fields,
                 check_results=[required_columns("generated_conversations", conv_frame)], metadata={
        **frame_metadata(conv_frame), "by_recipe": counts_by(conv_frame, "recipe") if conversations else {},
        "conversations_per_image": round(len(conversations) / max(len(records), 1), 2),
        "instructify_lanes": lanes,
        "instructify_by_prompt": summary["conversations_by_prompt"],
        "preview": preview(conv_frame, ["image_key", "recipe", "prompt_id", "turns"]), **llm_meta,
    })
    yield stored(attempt_frame, version, asset_key="conversation_attempts", **lineage_fields, metadata={
        **frame_metadata(attempt_frame), "instructify_iterations": summary["iterations"],
        "instructify_accepted": summary["accepted"], "rejected_by_reason": summary["rejected_by_reason"],
        "stopped_by_reason": summary["stopped_by_reason"], "mminstruct_answers": len(mm_conversations),
        "mminstruct_answer_words": dg.MetadataValue.json(diversity_mod.length_summary(
            [t["value"] for c in mm_conversations for t in c["turns"] if t["from"] == "gpt"])),
    })
    yield checks.every_image_accounted_for([r["image_id"] for r in records], attempt_frame)
    yield checks.unique_conversation_ids(conv_frame)


def _rule_reason(row: dict) -> str | None:
    """The row's recipe's rule filters on every gpt turn (filters.RULES_BY_RECIPE: MM-Instruct's
    rules for its answers, generic hygiene only for Instructify's verified ones)."""
    turns = [t["value"] for t in row.get("turns") or [] if t["from"] == "gpt"]
    return filters_mod.check_conversation(row["recipe"], turns, row.get("finish_reason"))


# the fit check reads each image's description (before, read without saying so: a dependency lineage missed)
FILTER_DEPS = ["generated_conversations", "image_descriptions"]


@dg.multi_asset(
    specs=[
        stored_spec("filtered_conversations", deps=FILTER_DEPS, group_name="conversations",
                     description="Conversations that pass their recipe's rule filters and (MM-Instruct) the LLM fit check.",
                     tags=REGENERATED, kinds={"parquet"}),
        stored_spec("conversation_rejects", deps=FILTER_DEPS, group_name="conversations",
                     description="Every generated conversation the filters removed, with the reason.",
                     tags=REGENERATED, kinds={"parquet"}),
    ],
    partitions_def=image_partitions, code_version=FILTER_VERSION, pool=llm_pool("checker"),
    retry_policy=LLM_RETRY_POLICY, check_specs=[required_columns_spec("filtered_conversations")],
)
@retry_only_transient
def filtered_conversations(context: dg.AssetExecutionContext, llm: LLMResource, generated_conversations: Parent,
                           image_descriptions: Parent):
    parent = generated_conversations.pointer
    frame = generated_conversations.read()
    rows = frame.to_dicts() if "conversation_id" in frame.columns else []
    reasons = {r["conversation_id"]: _rule_reason(r) for r in rows}
    to_check = [r for r in rows if r["recipe"] == answer_mod.RECIPE and reasons[r["conversation_id"]] is None]
    described = image_descriptions.read()
    description = dict(zip(described["image_id"], described["description"], strict=True))
    items = [{"image_id": r["image_id"], "instruction_id": r["instruction_id"], "description": description[r["image_id"]],
              "instruction": r["turns"][0]["value"].replace("<image>", "").strip()} for r in to_check]
    jobs = answer_mod.fit_requests(items)
    checker = llm.role("checker")
    results, llm_meta = checker.run_batch(context, [j.request for j in jobs], label="fit check") if jobs else ([], {})
    fit_keys, checked_by = {}, checker.get_client().identity.label()
    for row, job, result in zip(to_check, jobs, results, strict=True):
        fits = answer_mod.fit_row(job, result)["fits"]
        fit_keys[row["conversation_id"]] = result.cache_key
        if fits is not True:  # "no" and an unclear reply both fail, and say which
            reasons[row["conversation_id"]] = "instruction_does_not_fit" if fits is False else "fit_check_unclear"
    kept = frame.filter(pl.col("conversation_id").is_in([c for c, r in reasons.items() if r is None])) if rows else frame
    rejected = frame.filter(pl.col("conversation_id").is_in([c for c, r in reasons.items() if r])) if rows else frame
    if rows:
        rejected = rejected.with_columns(pl.col("conversation_id").replace_strict(reasons, default=None).alias("reason"))
        fit_key = pl.col("conversation_id").replace_strict(fit_keys, default=None, return_dtype=pl.String)
        fit_model = pl.when(fit_key.is_not_null()).then(pl.lit(checked_by)).otherwise(None).alias("fit_model")
        kept, rejected = (f.with_columns(fit_key.alias("fit_cache_key"), fit_model) for f in (kept, rejected))
    version = content_hash(parent["data_version"], FILTER_VERSION, filters_mod.filter_settings(),
                           checker.get_client().identity.as_dict())
    kept, rejected = (f.with_columns(pl.lit(FILTER_VERSION).alias("filter_version")) for f in (kept, rejected))
    lineage_fields = {"dataset_version": parent["dataset_version"], "code_version": FILTER_VERSION}
    yield stored(kept, version, asset_key="filtered_conversations", **lineage_fields,
                 check_results=[required_columns("filtered_conversations", kept)], metadata={
        **frame_metadata(kept), "generated": len(rows), "filter_settings": filters_mod.filter_settings(),
        "preview": preview(kept, ["image_key", "recipe", "turns"]), **llm_meta})
    yield stored(rejected, version, asset_key="conversation_rejects", **lineage_fields, metadata={
        **frame_metadata(rejected),
        "rejects_by_reason": counts_by(rejected, "reason") if rejected.height else {}})


def _changes(parquet, dataset: str, current: str | None) -> dict:
    """What changed (images, conversations, selected rows, and why) since the dataset version
    ingested before this one: deterministic for a given store history, so re-exports match."""
    versions = [v["dataset_version"] for v in versions_mod.dataset_versions(parquet, dataset)]
    before = versions[:versions.index(current)] if current in versions else []
    return versions_mod.manifest_changes(parquet, dataset, before[-1] if before else None, current)


class ExportConfig(dg.Config):
    """What visit_export writes. "selected": the selected subset (InstructionGPT-4's selection, as
    before). "filtered": every conversation of filtered_conversations, all shards of the dataset:
    the whole accepted set, as Instructify regenerates a dataset (LLaVA-158K from COCO, say)."""

    source: Literal["selected", "filtered"] = "selected"


def _shards() -> list[int]:
    return [int(s) for s in shard_partitions.get_partition_keys()]


def _selected(selected_subset: Parent, store: StoreResource) -> tuple[pl.DataFrame, dict]:
    """The selected subset and the manifest fields that name it."""
    frame = selected_subset.read()
    selection = selected_subset.current() or {}
    return frame, {"dataset_version": selection.get("dataset_version"),
                   "selection_data_version": selection.get("data_version")}


def _filtered(selected_subset: Parent, store: StoreResource) -> tuple[pl.DataFrame, dict]:
    """Every filtered conversation of every shard (image order) and the manifest fields that name
    them. A shard never filtered fails the run: an export that silently misses a shard would lie.
    Not inputs of the asset (see its deps): read as the run config asks."""
    dataset = selected_subset.dataset
    filtered = store.parent("filtered_conversations", dataset, _shards())
    pointers = filtered.pointers()
    missing = [s for s, p in pointers.items() if p is None]
    if missing:
        raise dg.Failure(f"filtered_conversations is not materialized for shard(s) {missing} of dataset {dataset!r}: "
                         "materialize it for every shard before exporting source 'filtered'")
    frame = filtered.read()
    if "conversation_id" in frame.columns:
        frame = frame.sort("image_key", "conversation_id")
    ingest = store.parent("source_records", dataset).current() or {}
    return frame, {"dataset_version": ingest.get("dataset_version"),
                   "filtered_data_versions": {str(s): p.get("data_version") for s, p in pointers.items() if p}}


@dg.asset(partitions_def=dataset_partitions, code_version=EXPORT_VERSION, group_name="conversations", kinds={"json"},
          # filtered_conversations reaches it through selected_subset (quality_scores reads every shard), so
          # an edit regenerates it once; a direct shard dependency made the sensor export twice after an
          # edit touching every shard (tests/daemon). The manifest names the filtered versions it read.
          tags=REGENERATED)
def visit_export(context: dg.AssetExecutionContext, config: ExportConfig, store: StoreResource,
                 selected_subset: Parent):
    """LLaVA JSON of the selected subset (run config `source: selected`, the default) or of every
    filtered conversation of the dataset (`source: filtered`), in a new folder per content version:
    never overwritten. The manifest names the source, so the two never share a folder."""
    dataset = safe_name(context.partition_key, "dataset")  # it becomes a folder name below
    frame, source_fields = (_filtered if config.source == "filtered" else _selected)(selected_subset, store)
    conversations = frame.to_dicts() if "conversation_id" in frame.columns else []
    items = export_mod.to_llava(conversations)
    invalid = export_mod.invalid_items_report(items, conversations)
    if invalid:  # before anything is written: every earlier export version stays as it was
        raise dg.Failure(f"export of {dataset!r} refused: {invalid}. Earlier export versions are untouched.")
    if config.source == "filtered":
        source_versions = sorted({v for v in frame["dataset_version"] if v}) if "dataset_version" in frame.columns else []
    else:
        source_versions = sorted({v for v in frame["source_dataset_version"] if v}) \
            if "source_dataset_version" in frame.columns else []
    fields = {"dataset": dataset, "export_source": config.source, **source_fields,
              "source_dataset_versions": source_versions,
              "changes_since_previous_dataset_version": _changes(store.store(), dataset, source_fields["dataset_version"]),
              **export_mod.export_summary(conversations)}
    table = io.BytesIO()
    frame.write_parquet(table)  # the full rows (scores and lineage included) beside the LLaVA JSON
    manifest = export_mod.write_export(items, store.exports() / dataset, fields,
                                       extra_files={"conversations.parquet": table.getvalue()})
    rows = pl.DataFrame({"conversation_id": [i["id"] for i in items], "image": [i["image"] for i in items]},
                        schema={"conversation_id": pl.String, "image": pl.String})
    rows = rows.with_columns(pl.lit(dataset).alias("dataset"), pl.lit(manifest["version"]).alias("export_version"))
    folder = store.exports() / dataset / manifest["version"]
    if manifest["not_real_models"]:
        context.log.warning(f"export {manifest['version']} holds text or scores of models without real weights: "
                            f"{manifest['not_real_models']} (manifest field not_real_models)")
    return stored(rows, manifest["version"], export_version=manifest["version"], metadata={
        **frame_metadata(rows), "export_source": config.source,
        "not_real_models": dg.MetadataValue.json(manifest["not_real_models"]),
        "export_folder": dg.MetadataValue.path(str(folder)),
        "manifest": dg.MetadataValue.json(json.loads(json.dumps(manifest, default=str))),
        "viewer": viewer_link("/browse", dataset=dataset, **({"status": "selected"} if config.source == "selected" else {})),
    })

"""MM-Instruct domain: seed_instructions -> generated_instructions -> clustered_instructions -> instruction_matches."""

import base64

import dagster as dg
import numpy as np
import polars as pl

from ...lib.code_version import code_version
from ...lib.frames import frame_fingerprint, rows_frame
from ...lib.ids import content_hash
from ...lib.metadata.pipeline import lineage_columns
from ...lib.mminstruct import cluster as cluster_mod
from ...lib.mminstruct import diversity as diversity_mod
from ...lib.mminstruct import generate as generate_mod
from ...lib.mminstruct import match as match_mod
from ...lib.mminstruct import seeds as seeds_mod
from ...lib.storage import Parent
from ..k8s import GPU_OP_TAGS
from ..llm.pools import llm_pool
from ..llm.resources import GENERATOR, LLMResource
from ..llm.retries import LLM_RETRY_POLICY, retry_only_transient
from ..metadata import counts_by, frame_metadata, preview, required_columns, required_columns_spec, stored
from ..models.resources import ClipResource, EmbedderResource
from ..partitions import dataset_and_shard, dataset_partitions, from_dataset, image_partitions
from ..resources import STORE_DATASET, StoreResource
from ..waves import REGENERATED

SEEDS_DATASET = "shared"  # seed instructions belong to no dataset; stored under this name
GENERATE_VERSION = code_version(generate_mod, seeds_mod, files=("prompts/mminstruct/instruction_generation.yaml",))
CLUSTER_VERSION = code_version(cluster_mod, generate_mod, files=("prompts/mminstruct/cluster_merge.yaml",))
MATCH_VERSION = code_version(match_mod)


@dg.asset(code_version=GENERATE_VERSION, group_name="mminstruct", kinds={"yaml", "parquet"},
          metadata={STORE_DATASET: SEEDS_DATASET})
def seed_instructions():
    """The seed instructions: the shipped visit_assets/data/seed_instructions.yaml, or the user's own
    file named by VISIT_SEEDS_FILE.

    The data version is the content hash of the seeds, so an edit marks everything below stale.
    """
    seeds = seeds_mod.load_seeds()
    version = seeds_mod.seeds_version()
    frame = pl.DataFrame([{"seed_id": s.id, "category": s.category, "text": s.text} for s in seeds]).with_columns(
        pl.lit(version).alias("seeds_version"))
    return stored(frame, version, dataset_version=version, metadata={
        **frame_metadata(frame), "seeds_version": version, "by_category": counts_by(frame, "category"),
        "path": dg.MetadataValue.path(str(seeds_mod.default_path()))})


@dg.asset(partitions_def=image_partitions, pool=llm_pool(GENERATOR),
          code_version=GENERATE_VERSION, group_name="mminstruct", tags=REGENERATED,
          kinds={"parquet"}, retry_policy=LLM_RETRY_POLICY, check_specs=[required_columns_spec("generated_instructions")])
@retry_only_transient
def generated_instructions(context: dg.AssetExecutionContext, llm: LLMResource, image_descriptions: Parent,
                           seed_instructions: Parent):
    """For each image description, one new instruction written by the LLM from 3 in-context seeds."""
    dataset, shard = dataset_and_shard(context)
    parent = image_descriptions.pointer
    described = image_descriptions.read()
    # The materialized seeds (what lineage names), not whatever the file says at this moment.
    seeds_at = seed_instructions.current()
    if seeds_at is None:
        raise FileNotFoundError("seed_instructions has not been materialized yet: materialize it first")
    seeds_version = seeds_at["data_version"]
    seeds = [seeds_mod.Seed(r["seed_id"], r["category"], r["text"])
             for r in seed_instructions.read().iter_rows(named=True)]
    jobs = generate_mod.instruction_requests(zip(described["image_id"], described["description"], strict=True), seeds,
                                             seed=0)
    results, llm_meta = llm.run_batch(context, [j.request for j in jobs], label="instructions") if jobs else ([], {})
    by_id = seeds_mod.seeds_by_id(seeds)
    rows = [generate_mod.instruction_row(j, r, by_id) for j, r in zip(jobs, results, strict=True)]
    frame = rows_frame(rows, [*lineage_columns(dataset, parent["dataset_version"], GENERATE_VERSION),
                               pl.lit(shard).alias("shard"), pl.lit(seeds_version).alias("seeds_version")])
    model = llm.get_client().identity
    version = content_hash(parent["data_version"], GENERATE_VERSION, seeds_version, model.as_dict())
    return stored(frame, version, dataset_version=parent["dataset_version"], code_version=GENERATE_VERSION,
                  check_results=[required_columns("generated_instructions", frame)], metadata={
        **frame_metadata(frame), "by_status": counts_by(frame, "status") if rows else {},
        "preview": preview(frame, ["image_id", "seed_ids", "instruction", "status"]), **llm_meta})


class InstructionClusterConfig(dg.Config):
    k: int = cluster_mod.DEFAULT_K  # 300 at paper scale; capped on small data (see lib.mminstruct.cluster)
    seed: int = 0


@dg.asset(partitions_def=dataset_partitions, code_version=CLUSTER_VERSION, group_name="mminstruct",
          ins={"generated_instructions": dg.AssetIn(partition_mapping=from_dataset)},
          pool="gpu", op_tags=GPU_OP_TAGS,  # the sentence embedder runs in the step (torch), whatever the LLM backend
          tags=REGENERATED, kinds={"parquet", "scikitlearn"}, retry_policy=LLM_RETRY_POLICY,
          check_specs=[required_columns_spec("clustered_instructions")])
@retry_only_transient
def clustered_instructions(context: dg.AssetExecutionContext, config: InstructionClusterConfig, store: StoreResource,
                           llm: LLMResource, embedder: EmbedderResource, generated_instructions: Parent):
    """Generated instructions embedded, clustered with k-means, and each cluster merged by the LLM into one."""
    dataset = context.partition_key
    generated = generated_instructions.read()  # every shard of the dataset
    ok = generated.filter(pl.col("status") == "ok") if "status" in generated.columns else generated.clear()
    groups = generate_mod.dedupe_exact(ok["instruction"].to_list())
    texts = [g.text for g in groups]
    model = embedder.get()
    vectors = model.encode(texts) if texts else np.zeros((0, 1), dtype=np.float32)
    labels, info = cluster_mod.cluster_instructions(vectors, config.k, config.seed)
    clusters = cluster_mod.group_clusters([g.instruction_id for g in groups], texts, vectors, labels)
    jobs = cluster_mod.merge_requests(clusters)
    results, llm_meta = llm.run_batch(context, [j.request for j in jobs], label="merge") if jobs else ([], {})
    rows = cluster_mod.mark_duplicate_merges([cluster_mod.merged_row(j, r) for j, r in zip(jobs, results, strict=True)])
    merged_texts = [r["instruction"] or "" for r in rows]
    merged_vecs = model.encode(merged_texts) if rows else np.zeros((0, 1), dtype=np.float32)
    versions = sorted(set(generated["dataset_version"])) if generated.height else ["none"]
    frame = rows_frame(rows, lineage_columns(dataset, versions[-1], CLUSTER_VERSION))
    if rows:
        frame = frame.with_columns(pl.Series("embedding", merged_vecs.astype(np.float32)),
                                   pl.lit(model.identity.label()).alias("embedder"))
    # every shard was read above, so each has a version: the list of versions, by shard
    version = content_hash([v for _, _, v in generated_instructions.data_versions()],
                           CLUSTER_VERSION, config.model_dump(), llm.get_client().identity.as_dict())
    return stored(frame, version, dataset_version=versions[-1], code_version=CLUSTER_VERSION,
                  check_results=[required_columns("clustered_instructions", frame)], metadata={
        **frame_metadata(frame), "generated_ok": ok.height, "distinct": len(groups),
        "merged_duplicates": sum(1 for r in rows if r["status"] == cluster_mod.DUPLICATE),
        "clustering": dg.MetadataValue.json(info.as_dict()),
        **_instruction_statistics(store.parent("seed_instructions", SEEDS_DATASET), ok, rows),
        "preview": preview(frame, ["instruction", "status", "member_ids"]), **llm_meta, **embedder.lineage()})


def _instruction_statistics(seed_instructions: Parent, generated: pl.DataFrame, merged_rows: list[dict]) -> dict:
    """MM-Instruct's diversity and length figures (section 3, Figure 7) as metadata: root verbs and
    ROUGE-L to the nearest seed of the generated instructions, word counts of generated and merged.

    The seeds are not a declared parent of clustered_instructions (they only colour its metadata),
    so no input brings them: the asset asks the store for them (optional: none before seeds exist)."""
    texts = generated["instruction"].to_list()
    merged = [r["instruction"] for r in merged_rows if r["status"] == "ok"]
    seeds = seed_instructions.read()["text"].to_list() if seed_instructions.exists else []
    plot = diversity_mod.length_plot({"generated": texts, "merged": merged})
    return {
        "diversity": dg.MetadataValue.json(diversity_mod.diversity_report(texts, seeds, sample=diversity_mod.ROUGE_SAMPLE)),
        "instruction_words": dg.MetadataValue.json({"generated": diversity_mod.length_summary(texts),
                                                    "merged": diversity_mod.length_summary(merged)}),
        "length_plot": dg.MetadataValue.md(
            f"![instruction lengths](data:image/png;base64,{base64.b64encode(plot).decode()})"),
    }


def merged_instructions(clustered_instructions: Parent) -> pl.DataFrame:
    """The usable merged instructions of a dataset (status ok)."""
    merged = clustered_instructions.read()
    return merged.filter(pl.col("status") == "ok") if "status" in merged.columns else merged.clear()


def instruction_vectors(space: str, merged: pl.DataFrame, clip: ClipResource, embedder: EmbedderResource) -> np.ndarray:
    """The merged instructions in the images' vector space: CLIP text vectors beside CLIP image
    vectors, else the sentence embedder's (the vectors clustering stored, when the same embedder)."""
    texts = merged["instruction"].to_list()
    if space == match_mod.CLIP_IMAGE:
        return clip.get().encode_texts(texts)
    if set(merged["embedder"]) == {embedder.get().identity.label()}:
        return np.stack(list(merged["embedding"].to_numpy()))  # embedded at clustering: reuse
    return embedder.get().encode(texts)


class MatchConfig(dg.Config):
    seed: int = 0
    temperature: float | None = None  # None: the matcher's default (see lib.mminstruct.match)
    keep_top: int = 5


@dg.asset(partitions_def=image_partitions, code_version=MATCH_VERSION, group_name="mminstruct",
          ins={"clustered_instructions": dg.AssetIn(partition_mapping=from_dataset)},
          pool="gpu", op_tags=GPU_OP_TAGS,  # the instructions are encoded in the step (CLIP text or the embedder)
          tags=REGENERATED, kinds={"parquet", "numpy"}, check_specs=[required_columns_spec("instruction_matches")])
def instruction_matches(context: dg.AssetExecutionContext, config: MatchConfig, clip: ClipResource,
                        embedder: EmbedderResource, image_embeddings: Parent, clustered_instructions: Parent):
    """Similarity of each image to every merged instruction, and one instruction sampled per image.

    CLIP image vectors meet CLIP text vectors; without CLIP weights, description vectors meet
    instruction vectors from the same sentence embedder. The matcher is recorded on every row.
    """
    dataset, shard = dataset_and_shard(context)
    images = image_embeddings.read().filter(pl.col("error").is_null())
    merged = merged_instructions(clustered_instructions)
    space = images["embedding_space"][0] if images.height else match_mod.DESCRIPTION_TEXT
    texts = merged["instruction"].to_list() if merged.height else []
    rows: list[dict] = []
    if images.height and texts:
        sims = match_mod.similarity(np.stack(list(images["embedding"].to_numpy())),
                                    instruction_vectors(space, merged, clip, embedder))
        ids = merged["instruction_id"].to_list()
        matches = match_mod.match_images(images["image_id"].to_list(), sims, ids, matcher=space, seed=config.seed,
                                         temperature=config.temperature)
        text_of = dict(zip(ids, texts, strict=True))
        rows = [{**m.as_row(ids, keep_top=config.keep_top), "instruction": text_of[m.instruction_id]} for m in matches]
    parent = image_embeddings.pointer
    frame = rows_frame(rows, [*lineage_columns(dataset, parent["dataset_version"], MATCH_VERSION),
                               pl.lit(shard).alias("shard")])
    # From the matches themselves: a new instruction pool that leaves this shard's matches as they
    # were (the same merged instructions won) changes nothing below.
    version = content_hash(frame_fingerprint(frame), MATCH_VERSION, config.model_dump())
    return stored(frame, version, dataset_version=parent["dataset_version"], code_version=MATCH_VERSION,
                  check_results=[required_columns("instruction_matches", frame)], metadata={
        **frame_metadata(frame), "matcher": space, "instructions": len(texts),
        "preview": preview(frame, ["image_id", "instruction", "similarity", "probability"])})

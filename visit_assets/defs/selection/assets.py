"""Selection domain (InstructionGPT-4): imported_conversations, quality_scores, image_clusters ->
selected_subset (+ selection_ranking) -> pairwise_evaluation. Dataset-level: scaling, clustering
and quotas are defined over a whole dataset version."""

import base64
import json
from typing import Literal

import dagster as dg
import numpy as np
import polars as pl

from ...lib.code_version import code_version
from ...lib.frames import embedding_matrix
from ...lib.ids import content_hash, image_id, stable_json
from ...lib.instructify import export as export_mod
from ...lib.metadata.pipeline import lineage_columns
from ...lib.selection import ann_spectral as ann_spectral_mod
from ...lib.selection import clustering as clustering_mod
from ...lib.selection import evaluation as evaluation_mod
from ...lib.selection import final_score as final_score_mod
from ...lib.selection import imported as imported_mod
from ...lib.selection import landmark_spectral as landmark_spectral_mod
from ...lib.selection import pairwise as pairwise_mod
from ...lib.selection import plots as plots_mod
from ...lib.selection import quality as quality_mod
from ...lib.selection import ranking as ranking_mod
from ...lib.selection import scores as scores_mod
from ...lib.selection import select as select_mod
from ...lib.storage import Parent
from ..k8s import GPU_OP_TAGS
from ..llm.pools import llm_pool
from ..llm.resources import LLMResource
from ..llm.retries import LLM_RETRY_POLICY, retry_only_transient
from ..metadata import counts_by, frame_metadata, preview, required_columns, required_columns_spec, stored, stored_spec
from ..models.resources import ClipResource, EmbedderResource, RewardResource
from ..partitions import dataset_partitions, from_dataset
from ..resources import DatasetsResource, StoreResource
from ..waves import REGENERATED
from . import scoring

IMPORT_VERSION = code_version(imported_mod, export_mod)  # export: validate_llava decides what is imported
QUALITY_VERSION = code_version(quality_mod, scores_mod, scoring, files=("prompts/selection/judge_score.yaml",))
CLUSTER_VERSION = code_version(clustering_mod, ann_spectral_mod, landmark_spectral_mod)
SELECT_VERSION = code_version(select_mod, final_score_mod, ranking_mod, scores_mod, plots_mod)
EVAL_VERSION = code_version(evaluation_mod, pairwise_mod,
                            files=("prompts/selection/pairwise.yaml", "prompts/selection/pairwise_example.yaml"))
GROUP = "selection"


def _dataset_dep(name: str) -> dg.AssetDep:
    return dg.AssetDep(name, partition_mapping=from_dataset)


def _dataset_in() -> dg.AssetIn:
    """Every shard of a per-shard parent, read by a dataset-level asset."""
    return dg.AssetIn(partition_mapping=from_dataset)


# A multi_asset's inputs: the parameters named after its specs' deps (the deps keep their partition
# mappings; Dagster refuses an AssetIn that repeats one).
@dg.multi_asset(
    specs=[
        stored_spec("imported_conversations", deps=["source_records", _dataset_dep("grouped_metadata"),
                                                     _dataset_dep("metadata_rejects")],
                     description="Already-made VisIT conversations from the dataset's conversations/ folder, "
                                 "to be scored and re-selected without regenerating (imported scores kept).",
                     tags=REGENERATED, kinds={"parquet"}, group_name=GROUP),
        stored_spec("imported_rejects", deps=["source_records", _dataset_dep("grouped_metadata"),
                                               _dataset_dep("metadata_rejects")],
                     description="Every imported item that could not be used, with the reason.",
                     tags=REGENERATED, kinds={"parquet"}, group_name=GROUP),
    ],
    partitions_def=dataset_partitions, code_version=IMPORT_VERSION,
)
def imported_conversations(context: dg.AssetExecutionContext, datasets: DatasetsResource, source_records: Parent,
                           grouped_metadata: Parent, metadata_rejects: Parent):
    dataset = context.partition_key
    layout = datasets.layout(dataset)
    parent = source_records.pointer
    known = set(grouped_metadata.read()["image_id"])
    files = [(p, layout.source_name(p)) for p in layout.imported]
    rows, rejects = imported_mod.load_imported(files, dataset, known, _qc_reasons(metadata_rejects))
    lineage = lineage_columns(dataset, parent["dataset_version"], IMPORT_VERSION)
    frame = pl.DataFrame(rows, schema=imported_mod.rows_schema()).with_columns(*lineage)
    rejected = pl.DataFrame(rejects, schema=imported_mod.REJECTS_SCHEMA).with_columns(*lineage)
    version = content_hash(parent["data_version"], grouped_metadata.data_versions(), IMPORT_VERSION)
    yield stored(frame, version, asset_key="imported_conversations", dataset_version=parent["dataset_version"],
                 code_version=IMPORT_VERSION, metadata={
        **frame_metadata(frame), "files": [name for _, name in files],
        "imported_scores": {n: int(frame[f"imported_{n}"].is_not_null().sum()) for n in imported_mod.SCORES},
        "preview": preview(frame, ["image_key", "source_id", "turns"])})
    yield stored(rejected, version, asset_key="imported_rejects", dataset_version=parent["dataset_version"],
                 code_version=IMPORT_VERSION, metadata={
        **frame_metadata(rejected), "rejects_by_reason": counts_by(rejected, "reason")})


def _qc_reasons(metadata_rejects: Parent) -> dict[str, str]:
    """Image id -> the reasons metadata QC gave for its records (metadata_rejects)."""
    dataset = metadata_rejects.dataset
    rejects = metadata_rejects.read()
    if not rejects.height:
        return {}
    by_image = (rejects.filter(pl.col("image_key").is_not_null())
                .group_by("image_key").agg(pl.col("reason").fill_null("rejected").unique().sort().str.join(", ")))
    return {image_id(dataset, key): why for key, why in by_image.iter_rows()}


class QualityConfig(dg.Config):
    """Which scores to compute. Weights are the selection's business (selected_subset)."""

    judge: bool = True  # the LLM judge score; False leaves it absent (weights renormalise)
    judge_max_tokens: int = 32  # the score is asked on the first line
    clip_max_sentences: int = 10  # long answers: mean of the first sentences (CLIP reads 77 tokens)


@dg.asset(partitions_def=dataset_partitions, code_version=QUALITY_VERSION, group_name=GROUP, pool="gpu", op_tags=GPU_OP_TAGS,
          kinds={"pytorch", "parquet"},
          tags=REGENERATED,
          ins={"filtered_conversations": _dataset_in(), "image_embeddings": _dataset_in()},
          retry_policy=LLM_RETRY_POLICY)
@retry_only_transient
def quality_scores(context: dg.AssetExecutionContext, config: QualityConfig, store: StoreResource,
                   llm: LLMResource, clip: ClipResource, embedder: EmbedderResource, reward: RewardResource,
                   filtered_conversations: Parent, imported_conversations: Parent, image_embeddings: Parent):
    """One row per conversation (filtered + imported): CLIP score, length, reward and judge scores,
    raw and scaled to 0-100 over the dataset version, each with the model that made it."""
    dataset = context.partition_key
    conversations = scoring.conversations(filtered_conversations, imported_conversations)
    judge = llm.role("judge")
    scores = scoring.score_all(context, config, image_embeddings, conversations,
                               scoring.Scorers(judge, clip, embedder, reward))
    raw, info = scores.raw, scores.info
    columns, scaling = quality_mod.scaled_columns(raw)
    frame = conversations.with_columns(
        *columns, *[pl.Series(f"{n}_model", m, dtype=pl.String) for n, m in scores.models.items()],
        *scores.judge_columns, pl.lit(stable_json(scaling)).alias("scaling"))
    dataset_version = scoring.current_dataset_version(store, dataset)
    frame = frame.with_columns(*lineage_columns(dataset, dataset_version, QUALITY_VERSION))
    version = content_hash(filtered_conversations.data_versions() + image_embeddings.data_versions(),
                           imported_conversations.data_versions(),
                           QUALITY_VERSION, config.model_dump(), info["models"],
                           judge.get_client().identity.as_dict() if config.judge else None)  # labels cut weights
    return stored(frame, version, dataset_version=dataset_version, code_version=QUALITY_VERSION, metadata={
        **frame_metadata(frame), "by_recipe": counts_by(frame, "recipe") if frame.height else {},
        "score_models": dg.MetadataValue.json(info["models"]), "scaling": dg.MetadataValue.json(scaling),
        "missing_scores": {n: int(frame[f"{n}_raw"].is_null().sum()) for n in raw},
        "judge_status": info["judge_status"], "clip_source": info["clip_source"],
        "preview": preview(frame, ["image_key", "recipe", "clip_raw", "length_raw", "judge_raw", "judge_status"]),
        **info["llm"]})


class ImageClusterConfig(dg.Config):
    """InstructionGPT-4 clusters CLIP image embeddings with spectral clustering, K=10."""

    k: int = 10
    seed: int = 0
    # auto: spectral-exact up to exact_max rows, spectral-ann above; spectral-landmark and kmeans++ only when named
    method: clustering_mod.ClusterMethod = "auto"
    exact_max: int = clustering_mod.EXACT_MAX  # above this many images, auto uses spectral-ann


@dg.asset(partitions_def=dataset_partitions, code_version=CLUSTER_VERSION, group_name=GROUP, kinds={"parquet"},
          tags=REGENERATED, ins={"image_embeddings": _dataset_in()})
def image_clusters(context: dg.AssetExecutionContext, config: ImageClusterConfig, store: StoreResource,
                   image_embeddings: Parent):
    """A spectral cluster per image (nearest-neighbour affinity); the method used is on every row."""
    dataset = context.partition_key
    emb = image_embeddings.read().sort("image_id")
    usable = emb.filter(pl.col("error").is_null()) if emb.height else emb
    X = embedding_matrix(usable["embedding"]) if usable.height else np.zeros((0, 1), np.float32)
    labels, info = clustering_mod.spectral_clusters(X, k=config.k, seed=config.seed, exact_max=config.exact_max,
                                                    method=config.method)
    dataset_version = scoring.current_dataset_version(store, dataset)
    frame = usable.select("image_id", "image_key", "embedding_space", "model", "model_weights").with_columns(
        pl.Series("cluster", labels, dtype=pl.Int64).replace(-1, None), pl.lit(info.get("method")).alias("method"),
        pl.lit(info["agreement_with_exact"]).alias("method_agreement"),
        *lineage_columns(dataset, dataset_version, CLUSTER_VERSION))
    version = content_hash(image_embeddings.data_versions(), CLUSTER_VERSION, config.model_dump())
    if emb.height > usable.height:
        context.log.warning(f"{emb.height - usable.height} images have no embedding (see image_embeddings.error)")
    for warning in info.get("warnings", []):  # e.g. a neighbour graph in pieces: clusters follow the pieces
        context.log.warning(f"image clustering: {warning}")
    return stored(frame, version, dataset_version=dataset_version, code_version=CLUSTER_VERSION,
                  method=info.get("method"), metadata={
        **frame_metadata(frame), "method": str(info.get("method")), "cluster_sizes": info["cluster_sizes"],
        "embedding_space": sorted(set(frame["embedding_space"])) if frame.height else [],
        "images_without_embedding": emb.height - usable.height,
        "clustering": dg.MetadataValue.json(json.loads(json.dumps(info, default=str)))})


class SelectionConfig(dg.Config):
    """F = sum of weight x score (paper Table 2); the top of each image cluster (Algorithm 1).
    The choices and the paper's ablations (docs/selection.md):"""

    weights: dict[str, float] = dict(scores_mod.DEFAULT_WEIGHTS)  # one score alone: the others 0 (Table 5)
    alpha_count: int = 200  # the paper's 200 of 3,439
    alpha_fraction: float | None = None  # when set, alpha = fraction x |D| (wins over alpha_count)
    # reference: as the public code (raw, length 10 x chars / 1009) | min-max: 0-100
    scaling: final_score_mod.Scaling = "reference"
    # paper: round(alpha |D_i| / |D|) | reference: the public code's 204 rule and cut
    quota_rule: select_mod.QuotaRule = "paper"
    # per-cluster (Algorithm 1) | global (no clustering) | random (Table 4/5)
    method: select_mod.SelectMethod = "per-cluster"
    seed: int = 0  # the random method's draw
    pool: ranking_mod.Pool = "all"  # all | generated: imported conversations left out (to compare against them)

    def alpha(self):
        return self.alpha_fraction if self.alpha_fraction is not None else self.alpha_count


@dg.multi_asset(
    specs=[
        stored_spec("selected_subset", deps=["quality_scores", "image_clusters"], group_name=GROUP,
                     description="The selected conversations: top F within each image cluster.",
                     tags=REGENERATED, kinds={"parquet"}),
        stored_spec("selection_ranking", deps=["quality_scores", "image_clusters"], group_name=GROUP,
                     description="Every scored conversation with its F, cluster, rank and why it was or was not selected.",
                     tags=REGENERATED, kinds={"parquet"}),
    ],
    partitions_def=dataset_partitions, code_version=SELECT_VERSION, check_specs=[required_columns_spec("selected_subset")],
)
def selected_subset(config: SelectionConfig, quality_scores: Parent, image_clusters: Parent):
    scored = quality_scores.read()
    all_clusters = image_clusters.read()
    clusters = all_clusters.select("image_id", "cluster")
    frame = scored.join(clusters, on="image_id", how="left")
    pool = ranking_mod.pool_rows(frame, config.pool)
    raw = {n: (pool[f"{n}_raw"].to_numpy() if pool[f"{n}_raw"].is_not_null().any() else None)
           for n in scores_mod.SCORE_NAMES if f"{n}_raw" in pool.columns}
    F, used, scaling = final_score_mod.final_scores(raw, config.weights, config.scaling) if pool.height \
        else (np.zeros(0), {}, {})
    chosen = select_mod.select(pool["conversation_id"].to_list(), F, pool["cluster"].to_numpy(), config.alpha(),
                               rule=config.quota_rule, method=config.method, seed=config.seed)
    method = {"scaling": config.scaling, "quota_rule": config.quota_rule, "method": config.method,
              "pool": config.pool, **({"seed": config.seed} if config.method == "random" else {})}
    ranking = ranking_mod.ranking(frame, chosen.rows, used, method)
    subset = frame.join(ranking.filter(pl.col("selected")).select("conversation_id", "F", "rank"),
                        on="conversation_id").sort("cluster", "rank")
    version = content_hash(quality_scores.data_versions() + image_clusters.data_versions(), SELECT_VERSION,
                           config.model_dump())
    # The rows come from quality_scores' rows; the code that made them is the selection's.
    subset, ranking = (f.with_columns(pl.lit(SELECT_VERSION).alias("code_version")) for f in (subset, ranking))
    dataset_version = scored["dataset_version"][0] if scored.height else None
    table = chosen.table
    plot = plots_mod.selection_plot(F, chosen.rows["selected"].to_numpy(), table["cluster"].to_list(),
                                    table["size"].to_list(), table["selected"].to_list())
    yield stored(subset, version, asset_key="selected_subset", dataset_version=dataset_version,
                 code_version=SELECT_VERSION, check_results=[required_columns("selected_subset", subset)], metadata={
        **frame_metadata(subset), "scored": frame.height, "pool": pool.height,
        "weights_given": config.weights, "weights_used": used, "scaling": dg.MetadataValue.json(scaling),
        "selection": dg.MetadataValue.json({**chosen.info, "scaling": config.scaling, "pool": config.pool}),
        "clusters": preview(table, table.columns, rows=table.height),
        "clustering_method": dg.MetadataValue.json(_methods(all_clusters)),
        "F": ranking_mod.distribution(F), "score_plot": dg.MetadataValue.md(
            f"![score distributions](data:image/png;base64,{base64.b64encode(plot).decode()})"),
        "preview": preview(subset, ["image_key", "recipe", "cluster", "F", "turns"])})
    yield stored(ranking, version, asset_key="selection_ranking", dataset_version=dataset_version,
                 code_version=SELECT_VERSION, metadata={
        **frame_metadata(ranking), "by_outcome": counts_by(ranking, "outcome") if ranking.height else {}})


def _methods(clusters: pl.DataFrame) -> list[dict]:
    """The clustering method(s) the selection's clusters came from, with their measured agreement."""
    columns = [c for c in ("method", "method_agreement") if c in clusters.columns]
    return clusters.select(columns).unique().sort(columns).to_dicts() if columns and clusters.height else []


class EvaluationConfig(dg.Config):
    """Pairwise LLM judge of the selected subset against a baseline of the same images."""

    # random: another (not selected) conversation of the image; imported: an imported one (scoring.evaluate)
    baseline: Literal["random", "imported"] = "random"
    # paper: win+tie = win (InstructionGPT-4); strict: disagreeing orders = tie (MM-Instruct)
    rule: pairwise_mod.Rule = "paper"
    seed: int = 0
    max_tokens: int = 256


@dg.asset(partitions_def=dataset_partitions, code_version=EVAL_VERSION, group_name=GROUP, pool=llm_pool("pairwise"),
          kinds={"parquet"}, ins={"image_descriptions": _dataset_in()}, retry_policy=LLM_RETRY_POLICY)
@retry_only_transient
def pairwise_evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, store: StoreResource,
                        llm: LLMResource, selected_subset: Parent, quality_scores: Parent, image_descriptions: Parent):
    """Win / Tie / Lose of the selected conversations against a baseline, judged in both orders.
    Offline evaluation: materialize it on demand (no automation)."""
    dataset = context.partition_key
    judge = llm.role("pairwise")
    dataset_version = scoring.current_dataset_version(store, dataset)
    rows, counts, unpaired, llm_meta = scoring.evaluate(context, config, quality_scores, selected_subset,
                                                        image_descriptions, judge, dataset_version)
    version = content_hash(selected_subset.data_versions() + quality_scores.data_versions(), EVAL_VERSION,
                           config.model_dump(), judge.get_client().identity.as_dict())
    rows = rows.with_columns(*lineage_columns(dataset, dataset_version, EVAL_VERSION))
    return stored(rows, version, dataset_version=dataset_version, code_version=EVAL_VERSION, metadata={
        **frame_metadata(rows), "win_tie_lose": dg.MetadataValue.json(counts),
        "unpaired_selected": unpaired, "baseline": config.baseline, "rule": config.rule,
        "preview": preview(rows, ["image_key", "prompt_id", "verdict_ab", "verdict_ba", "outcome"]), **llm_meta})

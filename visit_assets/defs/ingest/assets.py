"""Ingest domain: metadata files -> source_records -> grouped_metadata (+ rejects) -> image_descriptions."""

import importlib

import dagster as dg
import polars as pl

from ... import settings
from ...lib.code_version import code_version
from ...lib.ids import content_hash
from ...lib.metadata import coco_images, grouping, images, paths, pipeline
from ...lib.metadata import dataset as dataset_mod
from ...lib.metadata import describe as describe_mod
from ...lib.metadata import loaders as loaders_pkg
from ...lib.metadata.describe import describe, fact_count
from ...lib.metadata.loaders import common as loader_common
from ...lib.metadata.loaders import registry as loader_registry
from ...lib.mminstruct import describe as vlm_mod
from ...lib.storage import Parent
from ..metadata import counts_by, frame_metadata, preview, required_columns, stored, stored_spec, viewer_link
from ..partitions import dataset_and_shard, dataset_partitions, from_dataset, image_partitions
from ..resources import DatasetsResource
from ..waves import REGENERATED
from . import checks


def _loader_modules() -> list:
    """The module of every loader, built in or a plugin's: a new version of any changes the ingest's."""
    names = {f.__module__ for loader in loader_registry.available().values()
             for f in (loader.load, loader.detect, loader.companions) if f is not None}
    return [importlib.import_module(n) for n in sorted(names)]


LOADING_VERSION = code_version(dataset_mod, coco_images, loaders_pkg, loader_registry, loader_common, paths,
                               pipeline, *_loader_modules())
GROUPING_VERSION = code_version(grouping, images, paths, pipeline)
DESCRIBE_VERSION = code_version(describe_mod)

class GroupingConfig(dg.Config):
    """Quality-control thresholds (defaults from MM-Instruct's filters; see lib.metadata.grouping)."""

    check_images: bool = True  # open and decode every image; False trusts metadata sizes (bulk ingest)
    min_side: int = 100
    min_caption_words: int = 3
    min_caption_chars: int = 10
    max_text_chars: int = 4000
    box_tolerance: float = 0.01
    max_pixels: int = images.PIL_DEFAULT_MAX_PIXELS
    max_reject_rate: float = 0.5  # the reject_rate_bounded check warns above this share

    def qc(self) -> grouping.QCConfig:
        return grouping.QCConfig(**self.model_dump(exclude={"check_images", "max_reject_rate"}))


@dg.asset(partitions_def=dataset_partitions, code_version=LOADING_VERSION, group_name="ingest",
          kinds={"parquet", "polars"}, check_specs=checks.source_check_specs)
def source_records(context: dg.AssetExecutionContext, datasets: DatasetsResource):
    """Every input record of a dataset's metadata files in one table (rejected ones flagged, never dropped)."""
    dataset = context.partition_key
    layout = datasets.layout(dataset)
    seen = dataset_mod.fingerprint(layout.root)  # taken first: an edit during ingest triggers a re-run
    frame, version = pipeline.ingest_records(layout, settings.n_shards(), LOADING_VERSION)
    data_version = content_hash(version, LOADING_VERSION)
    flagged = frame.filter(pl.col("reject_reason").is_not_null())
    yield stored(
        frame, data_version, dataset_version=version, code_version=LOADING_VERSION, fingerprint=seen,
        check_results=[required_columns("source_records", frame)],
        metadata={
            "dataset_version": version,
            **frame_metadata(frame),
            "records_by_kind": counts_by(frame, "kind"),
            "records_by_format_and_kind": dg.MetadataValue.json(_by_format_and_kind(frame)),
            "loader_rejects_by_reason": counts_by(flagged, "reject_reason"),
            "sources": [layout.source_name(p) for p, _ in layout.sources],
            "companions": [layout.source_name(p) for p in layout.companions],
            "preview": preview(frame, ["record_id", "kind", "image_key", "text", "label", "reject_reason"]),
        },
    )
    yield checks.unique_record_ids(frame)


def _by_format_and_kind(frame: pl.DataFrame) -> dict[str, dict[str, int]]:
    """{format: {kind: records}}: what each dataset of a mixed folder brought."""
    counts = frame.group_by("source_format", "kind").len().sort("source_format", "kind")
    out: dict[str, dict[str, int]] = {}
    for fmt, kind, n in counts.iter_rows():
        out.setdefault(str(fmt), {})[str(kind)] = int(n)
    return out


GROUPING_DEPS = [dg.AssetDep("source_records", partition_mapping=from_dataset)]


@dg.multi_asset(
    specs=[
        stored_spec("grouped_metadata", deps=GROUPING_DEPS,
                     description="One record per image: captions, boxes (0-1), QA, OCR, size, sources.",
                     tags=REGENERATED, kinds={"parquet", "polars"}, group_name="ingest"),
        stored_spec("metadata_rejects", deps=GROUPING_DEPS,
                     description="Every source record that did not reach grouped_metadata, with its reason.",
                     tags=REGENERATED, kinds={"parquet"}, group_name="ingest"),
    ],
    partitions_def=image_partitions, check_specs=checks.grouping_check_specs, code_version=GROUPING_VERSION,
)
def grouped_metadata(context: dg.AssetExecutionContext, config: GroupingConfig, datasets: DatasetsResource,
                     source_records: Parent):
    dataset, shard = dataset_and_shard(context)
    parent = source_records.pointer
    records = source_records.scan().filter(pl.col("shard") == shard).collect()
    images_dir = datasets.layout(dataset).images_dir if config.check_images else None
    version = parent["dataset_version"]
    grouped, rejects = pipeline.group_shard(records, images_dir, config.qc(), dataset, version, GROUPING_VERSION)
    # From this shard's own records, not the dataset version: an edit elsewhere reruns nothing here.
    data_version = content_hash(pipeline.records_fingerprint(records), GROUPING_VERSION, config.model_dump())
    pointer_fields = {"dataset_version": version, "code_version": GROUPING_VERSION}
    yield stored(grouped, data_version, asset_key="grouped_metadata", **pointer_fields,
                 check_results=[required_columns("grouped_metadata", grouped)], metadata={
        "dataset_version": version, **frame_metadata(grouped),
        "images_checked": config.check_images, "source_records": records.height,
        # images whose record merges several sources (e.g. COCO captions with VQAv2 questions)
        "images_from_several_sources": int((grouped["sources"].list.len() > 1).sum()) if grouped.height else 0,
        "images_by_source_count": dg.MetadataValue.json(grouping.images_by_source_count(grouped)),
        "records_by_source": dg.MetadataValue.json(grouping.source_counts(records, rejects)),
        "preview": preview(grouped, ["image_key", "width", "height", "captions", "boxes", "qa", "sources"]),
        "viewer": viewer_link("/", dataset=dataset),
    })
    yield stored(rejects, data_version, asset_key="metadata_rejects", **pointer_fields, metadata={
        "dataset_version": version, **frame_metadata(rejects),
        "rejects_by_reason": counts_by(rejects, "reason"),
        "preview": preview(rejects, ["record_id", "kind", "image_key", "reason", "detail"]),
    })
    yield checks.unique_ids(grouped, "grouped_metadata")
    yield checks.records_accounted_for(records.height, grouped, rejects)
    yield checks.reject_rate_bounded(records.height, rejects, config.max_reject_rate)


def _vlm_descriptions(vlm_descriptions: Parent) -> tuple[dict[str, tuple[str, str]], str | None]:
    """The kept VLM descriptions of a shard, {image id: (text, model)}, and their data version
    (none yet: the describer is optional, its shard may never have been materialized)."""
    at = vlm_descriptions.current()
    if at is None:
        return {}, None
    kept = vlm_descriptions.read()
    kept = kept.filter(pl.col("kept")) if "kept" in kept.columns else kept.clear()
    return {r["image_id"]: (r["vlm_description"], r["model"]) for r in kept.iter_rows(named=True)}, at["data_version"]


@dg.asset(partitions_def=image_partitions, code_version=DESCRIBE_VERSION, group_name="ingest", tags=REGENERATED,
          kinds={"parquet"}, check_specs=checks.description_check_specs)
def image_descriptions(context: dg.AssetExecutionContext, grouped_metadata: Parent, vlm_descriptions: Parent):
    """Each grouped image rendered as plain text (captions, objects with coarse positions, QA facts,
    OCR), after a vision-language model's description where vlm_descriptions has one (`source`)."""
    dataset, shard = dataset_and_shard(context)
    parent = grouped_metadata.pointer
    grouped = grouped_metadata.read()
    seen, vlm_version = _vlm_descriptions(vlm_descriptions)
    rows = []
    for r in grouped.iter_rows(named=True):
        text, vlm = describe(r), seen.get(r["image_id"])
        rows.append({"image_id": r["image_id"], "image_key": r["image_key"], "shard": shard,
                     "description": vlm_mod.combined(vlm[0], text) if vlm else text, "n_facts": fact_count(r),
                     "source": f"vlm:{vlm[1]} + metadata" if vlm else "metadata"})
    schema = {"image_id": pl.String, "image_key": pl.String, "shard": pl.Int32, "description": pl.String,
              "n_facts": pl.Int64, "source": pl.String}
    described = pl.DataFrame(rows, schema=schema).with_columns(
        *pipeline.lineage_columns(dataset, parent["dataset_version"], DESCRIBE_VERSION),
        pl.lit(parent["data_version"]).alias("grouped_data_version"),
    )
    # unchanged when no VLM description is used, so turning the describer off keeps every version below
    data_version = content_hash(parent["data_version"], DESCRIBE_VERSION, *([vlm_version] if seen else []))
    yield stored(described, data_version, dataset_version=parent["dataset_version"], code_version=DESCRIBE_VERSION,
                 metadata={
        "dataset_version": parent["dataset_version"], **frame_metadata(described),
        "mean_facts_per_image": round(float(described["n_facts"].mean() or 0), 2),  # type: ignore[arg-type]  # polars: a float
        "by_source": counts_by(described, "source") if rows else {},
        "example": dg.MetadataValue.md("```\n" + (rows[0]["description"] if rows else "(no images)") + "\n```"),
    })
    yield checks.one_description_per_image(grouped, described)

"""The ingest steps as plain functions: the Dagster assets and the benchmark both call these."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from ..frames import RUN_COLUMNS, frame_fingerprint
from .dataset import DatasetLayout, dataset_version, load_dataset
from .grouping import QCConfig, group_records
from .images import probe_images


def lineage_columns(dataset: str, version: str | None, code_version: str) -> list[pl.Expr]:
    return [pl.lit(dataset).alias("dataset"), pl.lit(version).alias("dataset_version"),
            pl.lit(code_version).alias("code_version")]


def ingest_records(layout: DatasetLayout, n_shards: int, code_version: str) -> tuple[pl.DataFrame, str]:
    """All source records of the dataset with lineage columns, and the dataset version."""
    version = dataset_version(layout)
    frame = load_dataset(layout, n_shards).with_columns(
        *lineage_columns(layout.name, version, code_version),
        pl.lit(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())).alias("ingested_at"),
    )
    return frame, version


def records_fingerprint(records: pl.DataFrame) -> str:
    """Content hash of one shard's records (in file order): equal when an edit elsewhere in the
    dataset left this shard untouched, so its downstream partitions keep their data versions."""
    ordered = records.sort("record_order") if "record_order" in records.columns else records
    return frame_fingerprint(ordered, drop=(*RUN_COLUMNS, "record_order"))


def group_shard(records: pl.DataFrame, images_dir: Path | None, qc: QCConfig, dataset: str, version: str,
                code_version: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Group one shard's records; images are probed unless `images_dir` is None (sizes from metadata)."""
    probes = None
    if images_dir is not None:
        keys = records.get_column("image_key").drop_nulls().unique().sort().to_list()
        probes = probe_images(images_dir, keys, qc.max_pixels)
    grouped, rejects = group_records(records, probes, qc)
    lineage = lineage_columns(dataset, version, code_version)
    return grouped.with_columns(*lineage), rejects.with_columns(*lineage)

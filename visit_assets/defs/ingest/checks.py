"""Data-quality checks, evaluated inside the step that produced the data (no second read)."""

from __future__ import annotations

import dagster as dg
import polars as pl

from ..metadata import required_columns_spec

SOURCES, GROUPED, REJECTS, DESCRIPTIONS = "source_records", "grouped_metadata", "metadata_rejects", "image_descriptions"

source_check_specs = [
    dg.AssetCheckSpec("unique_record_ids", asset=SOURCES, blocking=True,
                      description="every input record has its own id, so lineage joins are one-to-one"),
    required_columns_spec(SOURCES),
]

grouping_check_specs = [
    dg.AssetCheckSpec("unique_image_ids", asset=GROUPED, description="one row per image"),
    dg.AssetCheckSpec("records_accounted_for", asset=GROUPED, blocking=True,
                      description="every source record of the shard is in an image or a reject row"),
    dg.AssetCheckSpec("reject_rate_bounded", asset=REJECTS,
                      description="share of rejected source records is under the configured bound"),
    required_columns_spec(GROUPED),
]
description_check_specs = [
    dg.AssetCheckSpec("one_description_per_image", asset=DESCRIPTIONS, blocking=True),
]


def unique_record_ids(frame: pl.DataFrame) -> dg.AssetCheckResult:
    dupes = frame.height - frame.get_column("record_id").n_unique()
    return dg.AssetCheckResult(check_name="unique_record_ids", asset_key=SOURCES, passed=dupes == 0,
                               metadata={"records": frame.height, "duplicates": dupes})


def unique_ids(frame: pl.DataFrame, asset: str, column: str = "image_id") -> dg.AssetCheckResult:
    dupes = frame.height - frame.get_column(column).n_unique() if frame.height else 0
    return dg.AssetCheckResult(check_name="unique_image_ids", asset_key=asset, passed=dupes == 0,
                               metadata={"duplicates": dupes})


def records_accounted_for(n_input: int, grouped: pl.DataFrame, rejects: pl.DataFrame) -> dg.AssetCheckResult:
    in_images = int(grouped.get_column("n_source_records").sum()) if grouped.height else 0
    ok = in_images + rejects.height == n_input
    return dg.AssetCheckResult(
        check_name="records_accounted_for", asset_key=GROUPED, passed=ok,
        metadata={"input_records": n_input, "in_images": in_images, "rejected": rejects.height},
        description=None if ok else "source records were lost or duplicated during grouping",
    )


def reject_rate_bounded(n_input: int, rejects: pl.DataFrame, bound: float) -> dg.AssetCheckResult:
    rate = rejects.height / n_input if n_input else 0.0
    return dg.AssetCheckResult(check_name="reject_rate_bounded", asset_key=REJECTS, passed=rate <= bound,
                               severity=dg.AssetCheckSeverity.WARN,
                               metadata={"reject_rate": round(rate, 4), "bound": bound})


def one_description_per_image(grouped: pl.DataFrame, described: pl.DataFrame) -> dg.AssetCheckResult:
    ok = described.height == grouped.height and set(described["image_id"]) == set(grouped["image_id"])
    return dg.AssetCheckResult(check_name="one_description_per_image", asset_key=DESCRIPTIONS, passed=ok,
                               metadata={"images": grouped.height, "descriptions": described.height})

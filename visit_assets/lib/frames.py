"""Turning a stage's row dicts into a storable frame."""

from __future__ import annotations

import hashlib

import polars as pl

# Columns naming the run that wrote a row rather than what the row says.
RUN_COLUMNS = ("dataset_version", "code_version", "ingested_at")


def rows_frame(rows: list[dict], lineage: list[pl.Expr]) -> pl.DataFrame:
    """Rows (nested values allowed; the whole list decides each type) plus constant lineage columns.
    No rows still gives a frame with an `image_id` column, so empty partitions stay queryable."""
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame(schema={"image_id": pl.String})
    return frame.with_columns(*lineage)


def frame_fingerprint(frame: pl.DataFrame, drop: tuple[str, ...] = RUN_COLUMNS) -> str:
    """Content hash of a frame's rows (in order) without its run columns: an output-based data
    version, so a stage whose rows come out the same leaves everything below it untouched."""
    body = frame.drop([c for c in drop if c in frame.columns]).write_ndjson()
    return hashlib.sha256(body.encode()).hexdigest()[:16]

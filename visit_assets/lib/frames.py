"""Turning a stage's row dicts into a storable frame."""

from __future__ import annotations

import hashlib

import numpy as np
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


def embedding_matrix(series: pl.Series, dim: int | None = None) -> np.ndarray:
    """float32 [rows, dim] of a list-of-floats column, NaN where a row is null: straight from
    Arrow's buffers, never a Python float per value (118k x 512 of those would take gigabytes)."""
    if series.len() == 0:
        return np.zeros((0, dim or 0), dtype=np.float32)
    if dim is None:  # stored as a fixed-size Array, or as a List
        dim = series.dtype.size if isinstance(series.dtype, pl.Array) else int(series.list.len().max() or 0)  # type: ignore[arg-type]  # polars: max() of lengths is an int
    return series.cast(pl.Array(pl.Float32, dim)).to_numpy()

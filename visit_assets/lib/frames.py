"""Turning a stage's row dicts into a storable frame."""

from __future__ import annotations

import polars as pl


def rows_frame(rows: list[dict], lineage: list[pl.Expr]) -> pl.DataFrame:
    """Rows (nested values allowed; the whole list decides each type) plus constant lineage columns.
    No rows still gives a frame with an `image_id` column, so empty partitions stay queryable."""
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame(schema={"image_id": pl.String})
    return frame.with_columns(*lineage)

"""Materialization metadata helpers: previews and counts that read well in the Dagster UI."""

from __future__ import annotations

from urllib.parse import urlencode

import dagster as dg
import polars as pl

from .. import settings


def preview(frame: pl.DataFrame, columns: list[str], rows: int = 5) -> dg.MetadataValue:
    """A markdown table of the first rows (long text cut, lists shown as lists)."""
    cols = [c for c in columns if c in frame.columns]
    head = frame.select(cols).head(rows).with_columns(
        pl.col(c).cast(pl.String).str.slice(0, 120) if frame.schema[c] == pl.String else
        pl.col(c).map_elements(lambda v: str(v)[:120], return_dtype=pl.String)
        for c in cols if frame.schema[c] not in (pl.Int64, pl.Int32, pl.Float64, pl.Boolean, pl.UInt32)
    )
    with pl.Config(tbl_formatting="ASCII_MARKDOWN", tbl_hide_column_data_types=True,
                   tbl_hide_dataframe_shape=True, fmt_str_lengths=120, tbl_rows=rows, tbl_cols=len(cols)):
        return dg.MetadataValue.md(str(head))


def viewer_link(path: str, **query: str) -> dg.MetadataValue:
    """A page of the data viewer (`visit-assets viewer`, at VISIT_VIEWER_URL): a link, valid while it runs."""
    return dg.MetadataValue.url(f"{settings.viewer_url()}{path}" + (f"?{urlencode(query)}" if query else ""))


def counts_by(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    rows = frame.group_by(column).len().sort("len", descending=True).iter_rows()
    return {str(k): int(n) for k, n in rows}


def markdown(frame: pl.DataFrame) -> dg.MetadataValue:
    """A whole (small) frame as a markdown table."""
    with pl.Config(tbl_formatting="ASCII_MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
                   tbl_rows=-1, tbl_cols=-1):
        return dg.MetadataValue.md(str(frame))

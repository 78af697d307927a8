"""Materialization metadata helpers: previews, column schemas and counts that read well in the
Dagster UI, and the check of a written frame against the columns its readers rely on."""

from __future__ import annotations

from urllib.parse import urlencode

import dagster as dg
import polars as pl

from .. import settings
from ..lib.columns import preview_rows, problem_text, schema_names, schema_problems
from ..lib.contracts import REQUIRED_COLUMNS
from ..lib.storage import Versioned, storable

REQUIRED_COLUMNS_CHECK = "required_columns"


def _table_schema(schema: pl.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, type) for name, type in schema_names(schema)])


def preview(frame: pl.DataFrame, columns: list[str], rows: int = 5) -> dg.MetadataValue:
    """The first rows of the named columns as a table (long text cut, lists and structs as text)."""
    cols, records = preview_rows(frame, columns, rows)
    return dg.MetadataValue.table(records=[dg.TableRecord(r) for r in records],
                                  schema=_table_schema(frame.select(cols).schema))


def frame_metadata(frame: pl.DataFrame) -> dict[str, dg.MetadataValue]:
    """Row count and column schema of a frame as the store writes it (all-null columns as text)."""
    return {"dagster/row_count": dg.MetadataValue.int(frame.height),
            "dagster/column_schema": dg.MetadataValue.table_schema(_table_schema(storable(frame).schema))}


def required_columns_spec(asset: str) -> dg.AssetCheckSpec:
    """The check, in the asset's own step, that its frame has the columns lib/contracts.py lists."""
    return dg.AssetCheckSpec(REQUIRED_COLUMNS_CHECK, asset=asset,
                             description="the written frame has the columns (and types) its readers rely on")


def required_columns(asset: str, frame: pl.DataFrame) -> dg.AssetCheckResult:
    """Fails (ERROR) naming the missing or mistyped columns; the frame is written either way."""
    problems = schema_problems(storable(frame).schema, REQUIRED_COLUMNS[asset], has_rows=frame.height > 0)
    text = problem_text(problems)
    return dg.AssetCheckResult(check_name=REQUIRED_COLUMNS_CHECK, asset_key=asset, passed=text is None,
                               severity=dg.AssetCheckSeverity.ERROR, description=text,
                               metadata={"required": len(REQUIRED_COLUMNS[asset]), **problems})


def stored(frame: pl.DataFrame, data_version: str, *, metadata: dict | None = None,
           check_results: list[dg.AssetCheckResult] | None = None, asset_key: str | None = None,
           **pointer_fields) -> dg.MaterializeResult:
    """An asset's result: the frame for the IO manager to store under its data version (the same
    version Dagster records), the fields for its pointer (dataset_version, code_version, ...)."""
    return dg.MaterializeResult(asset_key=asset_key, value=Versioned(frame, data_version, pointer_fields),
                                data_version=dg.DataVersion(data_version), metadata=metadata,
                                check_results=check_results)


def stored_spec(key: str, **spec) -> dg.AssetSpec:
    """A multi-asset's spec whose output reaches the IO manager (a plain spec's output is typed
    Nothing, so Dagster would store nothing)."""
    return dg.AssetSpec(key, **spec).with_io_manager_key("io_manager")


def viewer_link(path: str, **query: str) -> dg.MetadataValue:
    """A page of the data viewer (`visit-assets viewer`, at VISIT_VIEWER_URL): a link, valid while it runs."""
    return dg.MetadataValue.url(f"{settings.viewer_url()}{path}" + (f"?{urlencode(query)}" if query else ""))


def counts_by(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    rows = frame.group_by(column).len().sort("len", descending=True).iter_rows()
    return {str(k): int(n) for k, n in rows}


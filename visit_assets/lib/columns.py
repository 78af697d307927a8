"""Frames described column by column: type names and display values for the UI's tables, and
the check of a written frame against the columns its readers rely on (lib/contracts.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

DType = pl.DataType | pl.datatypes.DataTypeClass
# A required column's type: a full dtype, a class matching any parameters (pl.List: a list of
# anything), or None for any type.
Expected = DType | None

CELL_CHARS = 120  # longer text is cut in previews: the table stays readable


def type_name(dtype: DType) -> str:
    """A short name for a column type: int64, string, list[string], struct{label,x1}, array[float32]."""
    if isinstance(dtype, pl.List):
        return f"list[{type_name(dtype.inner)}]"
    if isinstance(dtype, pl.Array):
        return f"array[{type_name(dtype.inner)}]"
    if isinstance(dtype, pl.Struct):
        return "struct{" + ",".join(f.name for f in dtype.fields) + "}"
    name = str(dtype).lower()
    return "string" if name in ("string", "str", "utf8") else name


def schema_names(schema: Mapping[str, pl.DataType]) -> list[tuple[str, str]]:
    """(column, type name) for every column, in order."""
    return [(name, type_name(dtype)) for name, dtype in schema.items()]


def cell(value: Any) -> str | int | float | bool | None:
    """A JSON-safe table value: numbers and booleans as they are, None kept, text cut,
    anything else (lists, structs, dates) as its text, cut alike."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)  # NaN / inf are not JSON
    return (value if isinstance(value, str) else str(value))[:CELL_CHARS]


def preview_rows(frame: pl.DataFrame, columns: list[str], rows: int) -> tuple[list[str], list[dict[str, Any]]]:
    """The named columns the frame has, and its first rows of them as JSON-safe values."""
    cols = [c for c in columns if c in frame.columns]
    return cols, [{c: cell(v) for c, v in row.items()} for row in frame.select(cols).head(rows).iter_rows(named=True)]


def schema_problems(schema: Mapping[str, pl.DataType], required: Mapping[str, Expected],
                    has_rows: bool = True) -> dict[str, list[str]]:
    """Required columns the schema lacks, and those of another type ("col: got, expected").

    A frame with no rows is built from no row dicts (frames.rows_frame) and so has only the
    columns it is given: its missing columns are no problem, as its readers skip empty frames."""
    missing = [c for c in required if c not in schema] if has_rows else []
    wrong = [f"{c}: {type_name(schema[c])}, expected {type_name(t)}"
             for c, t in required.items() if t is not None and c in schema and schema[c] != t]
    return {"missing": missing, "wrong_type": wrong}


def problem_text(problems: Mapping[str, list[str]]) -> str | None:
    """What schema_problems found, in one line; None when nothing."""
    parts = [f"{label}: {', '.join(problems[key])}"
             for key, label in (("missing", "missing columns"), ("wrong_type", "wrong types")) if problems[key]]
    return "; ".join(parts) or None

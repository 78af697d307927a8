"""Column type names, preview values and the required-columns check (lib/columns.py, lib/contracts.py)."""

from __future__ import annotations

import polars as pl

from visit_assets.lib.columns import CELL_CHARS, cell, preview_rows, problem_text, schema_problems, type_name
from visit_assets.lib.contracts import REQUIRED_COLUMNS
from visit_assets.lib.metadata.records import SOURCE_RECORD_SCHEMA

TURNS = pl.List(pl.Struct({"from": pl.String, "value": pl.String}))


def test_type_names_are_short_and_say_what_is_nested():
    assert [type_name(t) for t in (pl.String, pl.Int64(), pl.Float64, pl.Boolean, pl.UInt32)] == \
        ["string", "int64", "float64", "boolean", "uint32"]
    assert type_name(pl.List(pl.String)) == "list[string]"
    assert type_name(TURNS) == "list[struct{from,value}]"
    assert type_name(pl.Array(pl.Float32, 4)) == "array[float32]"


def test_preview_values_are_json_safe_and_cut():
    assert cell(None) is None and cell(3) == 3 and cell(True) is True and cell(0.5) == 0.5
    assert cell(float("nan")) == "nan"
    assert cell("x" * 500) == "x" * CELL_CHARS
    assert cell([{"from": "human", "value": "hi"}]) == "[{'from': 'human', 'value': 'hi'}]"
    frame = pl.DataFrame({"a": ["t", None], "n": [1, 2], "l": [["x"], []]})
    cols, rows = preview_rows(frame, ["l", "missing", "a"], rows=1)
    assert cols == ["l", "a"] and rows == [{"l": "['x']", "a": "t"}]


def test_required_columns_ok_missing_and_wrong_type():
    required = {"conversation_id": pl.String, "turns": pl.List, "score": None}
    ok = pl.Schema({"conversation_id": pl.String, "turns": TURNS, "score": pl.Float32, "extra": pl.Int8})
    assert schema_problems(ok, required) == {"missing": [], "wrong_type": []} and problem_text(
        schema_problems(ok, required)) is None
    missing = schema_problems(pl.Schema({"conversation_id": pl.String}), required)
    assert missing == {"missing": ["turns", "score"], "wrong_type": []}
    wrong = schema_problems(pl.Schema({"conversation_id": pl.Int64, "turns": pl.String, "score": pl.String}), required)
    assert wrong["wrong_type"] == ["conversation_id: int64, expected string", "turns: string, expected list"]
    assert problem_text({**missing, **{"wrong_type": wrong["wrong_type"][:1]}}) == \
        "missing columns: turns, score; wrong types: conversation_id: int64, expected string"


def test_an_empty_frame_may_lack_columns_but_not_have_wrong_types():
    """rows_frame gives an empty partition only `image_id`: its readers skip it."""
    required = {"image_id": pl.String, "turns": pl.List}
    assert schema_problems(pl.Schema({"image_id": pl.String}), required, has_rows=False)["missing"] == []
    assert schema_problems(pl.Schema({"image_id": pl.Int64}), required, has_rows=False)["wrong_type"]


def test_source_records_contract_is_the_loaders_schema():
    assert SOURCE_RECORD_SCHEMA.items() <= REQUIRED_COLUMNS["source_records"].items()

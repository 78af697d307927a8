"""Helpers every loader test module uses: where the fixtures are, the checks every loaded frame must
pass, and the detection claims of every loader on a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.loaders import registry
from visit_assets.lib.metadata.records import REJECT_REASONS, SOURCE_RECORD_SCHEMA

LOADER_DATA = Path(__file__).parent.parent / "data" / "loaders"


def check_records(df: pl.DataFrame, fmt: str) -> pl.DataFrame:
    """The invariants of any loader's output: the schema, unique record ids, one format, known
    reject reasons, and a detail with every reject. Returns the frame."""
    assert df.schema == pl.Schema(SOURCE_RECORD_SCHEMA)
    assert df["record_id"].n_unique() == df.height
    assert set(df["source_format"]) == {fmt}
    assert set(df["reject_reason"].drop_nulls()) <= set(REJECT_REASONS)
    assert df.filter(pl.col("reject_reason").is_not_null())["reject_detail"].null_count() == 0
    return df


def claims(path: Path) -> dict[str, int]:
    """Every loader's detection claim on a file (loaders without detect left out)."""
    head = path.read_bytes()[: registry.HEAD_BYTES]
    return {name: ld.detect(path, head) for name, ld in registry.available().items() if ld.detect}


def other_fixtures(own: Path) -> list[Path]:
    """Every file under tests/data and in the embedded sample datasets, but those under `own` (a
    loader's fixture folder): what that loader's detection must not claim."""
    sample = Path(__file__).parents[2] / "visit_assets" / "data"
    found = [*LOADER_DATA.parent.rglob("*"), *sample.glob("sample*/**/*")]
    return sorted(p for p in found if p.is_file() and own not in p.parents)


def claimed_by(name: str, paths: list[Path]) -> list[Path]:
    """Those of `paths` the loader `name` claims (any claim above NO)."""
    loader = registry.get(name)
    return [p for p in paths if loader.detect(p, p.read_bytes()[: registry.HEAD_BYTES])]


@pytest.fixture
def loaded() -> Callable[..., pl.DataFrame]:
    """loaded(load, path, source, fmt): the loader's frame for one file, checked (check_records)."""
    def run(load: Callable[[Path, str], pl.DataFrame], path: Path, source: str, fmt: str) -> pl.DataFrame:
        return check_records(load(path, source), fmt)
    return run


@pytest.fixture
def detection_claims() -> Callable[[Path], dict[str, int]]:
    return claims


@pytest.fixture
def claims_on_other_fixtures() -> Callable[[str, Path], list[Path]]:
    """claims_on_other_fixtures(name, own): the files outside `own` the loader `name` claims (should be [])."""
    return lambda name, own: claimed_by(name, other_fixtures(own))

"""Parquet per partition under one root, plus small JSON pointers naming each current version.

    <root>/<asset>/dataset=<d>/<data_version>/<part>.parquet   every version ever written, kept
    <root>/_current/<asset>/<d>/<part>.json                     which version is current

Each partition is its own file written by rename, so parallel shard backfills never share a
lock (DuckDB allows one writer per database file; it only ever reads these files).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
from polars.datatypes import DataTypeClass

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def safe_name(value: str, what: str) -> str:
    """Names end up in paths and SQL text: only a conservative alphabet is allowed.

    `fullmatch`, not `match`: `$` also matches before a trailing newline, so "name\\n" would pass.
    """
    if not _SAFE.fullmatch(str(value)):
        raise ValueError(f"{what} {value!r} must match {_SAFE.pattern}")
    return str(value)


def _typed(dtype: pl.DataType | DataTypeClass) -> pl.DataType | DataTypeClass:
    """`dtype` with the Null type, at any depth, read as String."""
    if dtype == pl.Null:
        return pl.String()
    if isinstance(dtype, pl.List):
        return pl.List(_typed(dtype.inner))
    if isinstance(dtype, pl.Array):
        return pl.Array(_typed(dtype.inner), dtype.shape)
    if isinstance(dtype, pl.Struct):
        return pl.Struct([pl.Field(f.name, _typed(f.dtype)) for f in dtype.fields])
    return dtype


def storable(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with no column of the Null type: such a column becomes String (still all null).

    Polars gives a column the Null type when no row had a value (frames are built from row dicts,
    rows_frame), and writes it to Parquet as such. DuckDB cannot skip over one in a filtered read
    ("PlainSkip not implemented"), so every catalog query filtering that view would fail. The
    columns that come out all-null are optional text (a fact's derived_from, note and model, an
    LLM error, the reason column of an empty reject partition), and String is what a query expects
    of them. The frames have no declared schema to say otherwise (their types are inferred from the
    rows); the cost of the rule: a number column all null in one partition would read as text in
    the union of the partitions.

    Only the file changes: the data version (a hash of the rows, see frames.frame_fingerprint)
    is the same, so a version already on disk is not rewritten."""
    changed = {name: _typed(dtype) for name, dtype in frame.schema.items() if _typed(dtype) != dtype}
    return frame.cast(changed) if changed else frame  # type: ignore[arg-type]  # polars: Mapping keys are invariant, str is one of its key types


def part_name(shard: int | None) -> str:
    return "all" if shard is None else f"shard={int(shard)}"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ParquetStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def data_path(self, asset: str, dataset: str, data_version: str, shard: int | None = None) -> Path:
        return (self.root / safe_name(asset, "asset") / f"dataset={safe_name(dataset, 'dataset')}"
                / safe_name(data_version, "data version") / f"{part_name(shard)}.parquet")

    def pointer_path(self, asset: str, dataset: str, shard: int | None = None) -> Path:
        return (self.root / "_current" / safe_name(asset, "asset") / safe_name(dataset, "dataset")
                / f"{part_name(shard)}.json")

    def write(self, asset: str, dataset: str, data_version: str, frame: pl.DataFrame,
              shard: int | None = None, **extra) -> Path:
        """Write one partition's version, then point `current` at it (both by atomic rename).

        A data version already on disk is kept as it is: the version is a hash of everything that
        determines the rows, so they are the same rows, and those already there keep the dataset
        version that first produced them (never overwritten)."""
        path = self.data_path(asset, dataset, data_version, shard)
        if not path.exists():
            _atomic_write(path, lambda tmp: storable(frame).write_parquet(tmp, compression="zstd", statistics=True))
        pointer = {"asset": asset, "dataset": dataset, "shard": shard, "data_version": data_version,
                   "path": str(path.relative_to(self.root)), "rows": frame.height,
                   "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}
        _atomic_write(self.pointer_path(asset, dataset, shard),
                      lambda tmp: Path(tmp).write_text(json.dumps(pointer, sort_keys=True)))
        return path

    def current(self, asset: str, dataset: str, shard: int | None = None) -> dict | None:
        p = self.pointer_path(asset, dataset, shard)
        return json.loads(p.read_text()) if p.exists() else None

    def pointer(self, asset: str, dataset: str, shard: int | None = None) -> dict:
        """current(), for a partition that must exist: a clear error when it was never materialized."""
        pointer = self.current(asset, dataset, shard)
        if pointer is None:
            where = f"{asset}[{dataset}{'' if shard is None else f'|{shard}'}]"
            raise FileNotFoundError(f"{where} has not been materialized yet under {self.root}")
        return pointer

    def scan(self, asset: str, dataset: str, shard: int | None = None) -> pl.LazyFrame:
        """The current version of a partition; a clear error when it was never materialized."""
        return pl.scan_parquet(self.root / self.pointer(asset, dataset, shard)["path"])

    def read(self, asset: str, dataset: str, shard: int | None = None) -> pl.DataFrame:
        return self.scan(asset, dataset, shard).collect()

    def read_shards(self, asset: str, dataset: str, shards) -> pl.DataFrame:
        """Current versions of several shard partitions as one frame (columns may differ by shard)."""
        return pl.concat([self.read(asset, dataset, int(s)) for s in shards], how="diagonal_relaxed")

    def versions(self, asset: str, dataset: str) -> list[str]:
        base = self.root / safe_name(asset, "asset") / f"dataset={safe_name(dataset, 'dataset')}"
        return sorted(p.name for p in base.iterdir()) if base.exists() else []


@dataclass(frozen=True)
class Versioned:
    """A partition's rows as an asset returns them: stored under `data_version`, with `pointer_fields`
    (dataset_version, code_version, ...) on its current-version pointer."""

    frame: pl.DataFrame
    data_version: str
    pointer_fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Parent:
    """What an asset reads of one parent: a partition, or several shards of one dataset.

    Reads are lazy: an asset that only needs a parent's version, or reads it only when it exists
    (optional inputs), never loads the rows."""

    store: ParquetStore
    asset: str
    dataset: str
    shards: tuple[int | None, ...] = (None,)

    def _one(self) -> int | None:
        if len(self.shards) != 1:
            raise ValueError(f"{self.asset}[{self.dataset}] is read as {len(self.shards)} shards, not one partition")
        return self.shards[0]

    def current(self) -> dict | None:
        """The pointer of the one partition, or None when it was never materialized."""
        return self.store.current(self.asset, self.dataset, self._one())

    @property
    def exists(self) -> bool:
        return all(self.store.current(self.asset, self.dataset, s) is not None for s in self.shards)

    @property
    def pointer(self) -> dict:
        """The one partition's pointer; a clear error when it was never materialized."""
        return self.store.pointer(self.asset, self.dataset, self._one())

    def scan(self) -> pl.LazyFrame:
        return self.store.scan(self.asset, self.dataset, self._one())

    def read(self) -> pl.DataFrame:
        """The current rows: of the partition, or of every shard as one frame."""
        if self.shards == (None,):
            return self.store.read(self.asset, self.dataset)
        return self.store.read_shards(self.asset, self.dataset, self.shards)

    def made(self) -> Parent:
        """The shards that have a current version (a shard may hold no image yet)."""
        return replace(self, shards=tuple(s for s in self.shards if self.store.current(self.asset, self.dataset, s)))

    def pointers(self) -> dict[int | None, dict | None]:
        """Each shard's pointer, None for a shard never materialized."""
        return {s: self.store.current(self.asset, self.dataset, s) for s in self.shards}

    def data_versions(self) -> list:
        """[asset, shard, data version or None] per shard: what an asset's own version hashes."""
        return [(self.asset, s, (self.store.current(self.asset, self.dataset, s) or {}).get("data_version"))
                for s in self.shards]

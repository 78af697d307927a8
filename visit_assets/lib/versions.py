"""Two dataset versions side by side: which images and conversations changed, and why.

A dataset version is the `dataset_version` every row carries (the content hash of the dataset's
metadata files). The rules live in one place, the DuckDB macros of `sql/version_diff.sql` (whose
header states them): which data file holds each partition's rows "as of" a version (exact, else
earlier, else later), how items are matched (`image_id` for grouped_metadata, `conversation_id` for
the conversation assets and the selected subset) and which reasons a change gets (metadata, prompt,
model, sampling_config, code_version, other). Users query the same macros in the catalog:
`SELECT * FROM version_diff('sample', '<old>', '<new>')`.

This module runs them in an in-memory DuckDB over the store (`catalog.version_diff_connection`)
and only shapes their results: counts, reason histograms, examples, per-image views. SQL is the
one implementation rather than Polars because the catalog must answer `version_diff` by itself (a
DuckDB client opening it cannot call Python), and DuckDB expresses every rule, file modification
times included (`read_blob`). Imports no Dagster.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from .catalog import VERSION_DIFF_INPUTS, version_diff_connection
from .storage import ParquetStore, safe_name

REASONS = ("metadata", "prompt", "model", "sampling_config", "code_version", "other")
CHANGES = ("added", "removed", "changed")
KEYS = {"grouped_metadata": "image_id", "generated_conversations": "conversation_id",
        "filtered_conversations": "conversation_id", "selected_subset": "conversation_id"}
ASSETS = tuple(KEYS)
SIDES = ("old", "new")


def _root(store: ParquetStore | str | Path) -> Path:
    return Path(store.root if isinstance(store, ParquetStore) else store).resolve()


@dataclass(frozen=True)
class _Db:
    con: duckdb.DuckDBPyConnection  # a cursor of the store's connection: its own temp tables, thread-safe
    views: frozenset[str]  # the <asset>_all views built (assets with data files)

    def rows(self, sql: str, params: list) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


# One connection per store, kept while its input assets hold the same files: building it binds every
# view and macro (a few hundred ms, paid once per store state instead of once per viewer page load).
# Views re-list their files at each query, so new files of a known asset need no rebuild; a new file
# may turn a stub macro into the real one (an asset's first rows), hence the file counts in the key.
# The process id is in it too: a forked worker (a Dagster run) must not use its parent's DuckDB.
_CONNECTIONS: dict[Path, tuple[tuple, duckdb.DuckDBPyConnection, frozenset[str]]] = {}
_LOCK = threading.Lock()
_KEEP = 4  # stores kept (the viewer has one; a test session makes many)


def _store_state(root: Path) -> tuple:
    return os.getpid(), tuple((a, sum(1 for _ in root.glob(f"{a}/*/*/*.parquet"))) for a in VERSION_DIFF_INPUTS)


@contextlib.contextmanager
def _open(store: ParquetStore | str | Path, dataset: str) -> Iterator[_Db]:
    safe_name(dataset, "dataset")  # a name the store refuses is a ValueError, as for every store read
    root = _root(store)
    state = _store_state(root)
    with _LOCK:
        known = _CONNECTIONS.get(root)
        if known is None or known[0] != state:
            con = version_diff_connection(root)
            con.execute("SET parquet_metadata_cache = true")  # files are immutable once written
            views = frozenset(r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal")
                              .fetchall())
            _CONNECTIONS.pop(root, None)  # a replaced or evicted connection closes once its cursors are done
            while len(_CONNECTIONS) >= _KEEP:
                _CONNECTIONS.pop(next(iter(_CONNECTIONS)))
            known = _CONNECTIONS[root] = (state, con, views)
        cursor = known[1].cursor()
    try:
        yield _Db(cursor, known[2])
    finally:
        cursor.close()


def _versions(db: _Db, dataset: str) -> list[dict[str, Any]]:
    if "source_records_all" not in db.views:
        return []
    return db.rows("SELECT dataset_version, ingested_at, source_records FROM vd_versions(?) ORDER BY rnk", [dataset])


def dataset_versions(store: ParquetStore | str | Path, dataset: str) -> list[dict[str, Any]]:
    """Every ingested version of `dataset`, oldest first: [{dataset_version, ingested_at, source_records}]."""
    with _open(store, dataset) as db:
        return _versions(db, dataset)


def latest_versions(store: ParquetStore | str | Path, dataset: str, n: int = 2) -> list[str]:
    return [v["dataset_version"] for v in dataset_versions(store, dataset)][-n:]


def _state_rows(db: _Db, asset: str, sql_where: str, params: list) -> pl.DataFrame | None:
    """Rows of `asset` in the files `st` (the temporary state table) names, every column, with `side`
    and `_part`; None when the asset has no view or no such column."""
    if f"{asset}_all" not in db.views:
        return None
    try:  # asset is one of KEYS: a fixed identifier, never user input
        return db.con.execute(
            f"SELECT st.side, a.* EXCLUDE (filename), st.part AS _part FROM {asset}_all a "
            "JOIN st ON st.asset = ? AND a.filename = st.filename AND a.dataset_version = st.dataset_version "
            f"WHERE {sql_where} ORDER BY st.side, st.part", [asset, *params]).pl()
    except duckdb.BinderException:  # no image_id column (an asset of empty partitions only)
        return None


def asset_rows(store: ParquetStore | str | Path, asset: str, dataset: str,
               dataset_version: str) -> tuple[pl.DataFrame, dict[str, int]] | None:
    """The rows of `asset` as of `dataset_version` (column `_part` names each row's partition file),
    and how many partitions were found exactly / earlier / later; None when the asset was absent."""
    with _open(store, dataset) as db:
        _pick_versions(db, dataset, dataset_version, dataset_version)
        db.con.execute("CREATE OR REPLACE TEMP TABLE st AS SELECT 'new' AS side, * FROM vd_state(?, ?) WHERE asset = ?",
                       [dataset, dataset_version, asset])
        tiers = Counter(t for (t,) in db.con.execute("SELECT tier FROM st").fetchall())
        if not tiers:
            return None
        frame = _state_rows(db, asset, "true", [])
        frame = frame.drop("side") if frame is not None else pl.DataFrame(schema={"_part": pl.String})
        return frame, {name: tiers.get(t, 0) for t, name in enumerate(("exact", "earlier", "later"))}


def _compare(db: _Db, dataset: str, old: str, new: str) -> tuple[list[dict], dict[str, dict]]:
    """The change records and, per asset, what was found at each side (versions checked before).
    One pass over the rows (vd_items, kept in a temporary table) gives both the changes and each side's
    item count; vd_states, kept as `st`, gives presence and how partitions were found."""
    params = [dataset, old, new]
    db.con.execute("CREATE OR REPLACE TEMP TABLE st AS SELECT * FROM vd_states(?, ?, ?)", params)
    db.con.execute("CREATE OR REPLACE TEMP TABLE items AS SELECT * FROM vd_items(?, ?, ?)", params)
    changes = db.rows("SELECT * FROM items WHERE change <> 'unchanged' ORDER BY asset, item_id", [])
    counts = {(r["asset"], side): r[side] for r in db.rows(
        "SELECT asset, count(*) FILTER (WHERE change <> 'added') AS old, "
        "count(*) FILTER (WHERE change <> 'removed') AS new FROM items GROUP BY asset", []) for side in SIDES}
    tiers = {(r["asset"], r["side"]): r for r in db.rows(
        "SELECT asset, side, count(*) FILTER (WHERE tier = 0) AS exact, count(*) FILTER (WHERE tier = 1) AS earlier, "
        "count(*) FILTER (WHERE tier = 2) AS later FROM st GROUP BY ALL", [])}
    info: dict[str, dict] = {}
    for asset in ASSETS:
        found = {side: tiers.get((asset, side)) for side in SIDES}
        info[asset] = {
            "present": {side: r is not None for side, r in found.items()},
            "rows": {side: counts.get((asset, side), 0) for side in SIDES},
            "partitions": {side: {k: r[k] for k in ("exact", "earlier", "later")} for side, r in found.items() if r},
        }
    return changes, info


def _has_files(root: Path, asset: str, dataset: str) -> bool:
    """Whether the asset was ever written for the dataset, rows or not (an empty partition counts)."""
    base = root / safe_name(asset, "asset") / f"dataset={safe_name(dataset, 'dataset')}"
    return base.exists() and any(base.glob("*/*.parquet"))


def _record(c: dict[str, Any]) -> dict[str, Any]:
    """A change record as the callers see it: `fields` only for a changed grouped_metadata image."""
    out = {k: c[k] for k in ("asset", "item_id", "image_id", "change", "reasons", "image_key")}
    if c["asset"] == "grouped_metadata" and c["change"] == "changed":
        out["fields"] = c["fields"]
    return out


def version_changes(store: ParquetStore | str | Path, dataset: str, old: str, new: str,
                    assets=ASSETS) -> pl.DataFrame:
    """One row per added / removed / changed item: asset, item_id, image_id, change, reasons (sorted)."""
    with _open(store, dataset) as db:
        old, new = _pick_versions(db, dataset, old, new)
        rows = db.rows("SELECT * FROM version_diff(?, ?, ?)", [dataset, old, new])
    schema: dict[str, pl.DataType | pl.datatypes.DataTypeClass] = {
        "asset": pl.String, "item_id": pl.String, "image_id": pl.String, "change": pl.String, "reasons": pl.List(pl.String)}
    return pl.DataFrame([r for r in rows if r["asset"] in assets], schema=schema).sort("asset", "item_id")


def _example(c: dict[str, Any]) -> dict[str, Any]:
    out = {"id": c["item_id"], "image_id": c["image_id"], "image_key": c["image_key"], "reasons": c["reasons"]}
    if "fields" in c:
        out["fields"] = c["fields"]
    return out


def _images(changes: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """Changes grouped by image: how many images, and per example image its counts and reasons."""
    by_image: dict[str, dict[str, Any]] = {}
    for c in changes:
        if c["image_id"] is None:
            continue
        entry = by_image.setdefault(c["image_id"], {"image_id": c["image_id"], "image_key": c["image_key"],
                                                    **{k: 0 for k in CHANGES}, "reasons": set()})
        entry[c["change"]] += 1
        entry["reasons"].update(c["reasons"])
        entry["image_key"] = entry["image_key"] or c["image_key"]
    examples = [{**e, "reasons": sorted(e["reasons"])} for _, e in sorted(by_image.items())][:limit]
    return {"affected": len(by_image), "examples": examples}


def _pick_versions(db: _Db, dataset: str, old: str | None, new: str | None) -> tuple[str, str]:
    """Both versions, checked. Defaults: `new` the most recent version, `old` the one ingested just before `new`."""
    ordered = [v["dataset_version"] for v in _versions(db, dataset)]
    new = new if new is not None else (ordered[-1] if ordered else None)
    if old is None and new in ordered:
        if ordered.index(new) == 0:
            raise ValueError(f"{dataset!r} has no dataset version before {new!r}: a diff needs two")
        old = ordered[ordered.index(new) - 1]
    for v in (old, new):
        if v not in ordered:
            raise ValueError(f"{dataset!r} has no dataset version {v!r}; known: {ordered}")
    assert old is not None and new is not None  # both in ordered: checked above
    return old, new


def diff_versions(store: ParquetStore | str | Path, dataset: str, old: str | None = None, new: str | None = None,
                  assets=ASSETS, examples: int = 5) -> dict[str, Any]:
    """What changed between two dataset versions (default: the most recent and the one before it).

    Per asset: `counts` of added / removed / changed / unchanged items, a `reasons` histogram, the
    `images` affected (count, and per example image its counts and reasons) and up to `examples`
    example items per kind of change (id, image, reasons; for grouped_metadata also the changed
    `fields`). An asset with no data files for the dataset is `{"absent": true}`; `present` says
    whether it had rows at or before each version (an empty partition carries no version, so
    "no rows yet" and "not materialized yet" look the same). JSON-serialisable."""
    with _open(store, dataset) as db:
        old, new = _pick_versions(db, dataset, old, new)
        changes, info = _compare(db, dataset, old, new)
    root = _root(store)
    out: dict[str, Any] = {"dataset": dataset, "old": old, "new": new, "assets": {}}
    for asset in assets:
        mine = [_record(c) for c in changes if c["asset"] == asset]
        meta = info[asset]
        if not _has_files(root, asset, dataset):
            out["assets"][asset] = {"absent": True, "present": meta["present"]}
            continue
        counts = Counter(c["change"] for c in mine)
        unchanged = meta["rows"]["new"] - counts["added"] - counts["changed"]
        out["assets"][asset] = {
            "key": KEYS[asset], "present": meta["present"], "rows": meta["rows"],
            "partitions": meta["partitions"],
            "counts": {**{k: counts.get(k, 0) for k in CHANGES}, "unchanged": max(unchanged, 0)},
            "reasons": dict(sorted(Counter(r for c in mine for r in c["reasons"]).items())),
            "images": _images(mine, examples),
            "examples": {k: [_example(c) for c in mine if c["change"] == k][:examples] for k in CHANGES},
        }
    return out


def image_changes(store: ParquetStore | str | Path, dataset: str, image: str, old: str | None = None,
                  new: str | None = None, assets=ASSETS) -> dict[str, Any]:
    """One image across two versions (defaults as `diff_versions`): per asset, each of its items with
    its row in each version (None where it has none) and the change record `diff_versions` counts for
    it (`change` added / removed / changed / unchanged, `reasons`, for grouped_metadata `fields`)."""
    with _open(store, dataset) as db:
        old, new = _pick_versions(db, dataset, old, new)
        changes, _ = _compare(db, dataset, old, new)  # leaves the files of each side in `st`
        frames = {asset: _state_rows(db, asset, "a.image_id = ?", [image]) for asset in assets}
    out: dict[str, Any] = {"dataset": dataset, "image_id": image, "old": old, "new": new, "assets": {}}
    for asset in assets:
        key, frame = KEYS[asset], frames[asset]
        sides: dict[str, dict] = {side: {} for side in SIDES}
        for row in frame.to_dicts() if frame is not None and key in frame.columns else []:
            side = row.pop("side")
            if row[key] is not None:
                sides[side][row[key]] = row
        records = {c["item_id"]: _record(c) for c in changes if c["asset"] == asset and c["image_id"] == image}
        items = []
        for item in sorted(set(sides["old"]) | set(sides["new"])):
            record = records.get(item, {"change": "unchanged", "reasons": []})
            items.append({"id": item, "old": sides["old"].get(item), "new": sides["new"].get(item),
                          "change": record["change"], "reasons": record["reasons"],
                          "fields": record.get("fields", [])})
        out["assets"][asset] = items
    return out


def manifest_changes(store: ParquetStore | str | Path, dataset: str, previous_dataset_version: str | None,
                     dataset_version: str | None, max_examples: int = 20) -> dict[str, Any]:
    """"Changes since the previous export", small and JSON-serialisable: per asset the counts, the
    reasons histogram and at most `max_examples` ids per kind of change."""
    base = {"previous_dataset_version": previous_dataset_version, "dataset_version": dataset_version}
    if previous_dataset_version is None or dataset_version is None:
        return {**base, "first": True, "assets": {}}
    if previous_dataset_version == dataset_version:
        return {**base, "same_version": True, "assets": {}}
    full = diff_versions(store, dataset, previous_dataset_version, dataset_version, examples=max_examples)
    assets = {}
    for asset, d in full["assets"].items():
        if d.get("absent") or not any(d["rows"].values()):
            continue
        assets[asset] = {"key": d["key"], **d["counts"], "reasons": d["reasons"],
                         "images_affected": d["images"]["affected"],
                         "examples": {k: [e["id"] for e in d["examples"][k]] for k in CHANGES}}
    return {**base, "assets": assets}


def format_diff(diff: dict[str, Any]) -> str:
    """A readable summary of `diff_versions` output (the `visit-assets diff` command prints it)."""
    lines = [f"dataset {diff['dataset']}: {diff['old']} -> {diff['new']}"]
    for asset, d in diff["assets"].items():
        if d.get("absent"):
            lines.append(f"  {asset:<24} not materialized for this dataset")
            continue
        if not any(d["rows"].values()):
            lines.append(f"  {asset:<24} no rows in either version")
            continue
        c = d["counts"]
        where = "" if all(d["present"].values()) else \
            f" (no rows at the {'old' if not d['present']['old'] else 'new'} version)"
        lines.append(f"  {asset:<24} {c['added']} added, {c['removed']} removed, {c['changed']} changed, "
                     f"{c['unchanged']} unchanged ({d['key']}; {d['images']['affected']} images affected){where}")
        if d["reasons"]:
            lines.append("    why: " + ", ".join(f"{r} {n}" for r, n in d["reasons"].items()))
        for kind in CHANGES:
            for e in d["examples"][kind]:
                extra = f" fields: {', '.join(e['fields'])}" if e.get("fields") else ""
                lines.append(f"    {kind:<8} {e['id']}  {e.get('image_key') or e.get('image_id') or ''}"
                             f"  [{', '.join(e['reasons'])}]{extra}")
    return "\n".join(lines)

"""Two dataset versions side by side: which images and conversations changed, and why.

A dataset version is the `dataset_version` every row carries (the content hash of the dataset's
metadata files). The store keeps every data version of every partition, but a partition is not
always re-materialized for every dataset version, and its pointer files only name the current
one, so the rows "as of" a dataset version V are found from the data files themselves:

    for each asset and partition file name (shard=<s>.parquet / all.parquet), take
      1. exact:   the newest file whose rows carry V;
      2. earlier: else the newest file whose rows carry a version ingested before V (the partition
                  was not re-run for V: its rows were still current then);
      3. later:   else, if the asset had any file at or before V, the oldest file of a later version.
                  Stores written before `ParquetStore.write` kept a data version's first file may
                  hold V's rows overwritten by a later re-run that reached the same data version
                  (equal data versions promise equal content): that later file stands for V. (Now a
                  file, once written, keeps the dataset version that first produced it: rule 2.)
    An asset without any file at or before V is absent at V. A file without rows carries no
    version and is never chosen. "As of V" is the last state while V was current: a seed, prompt,
    code or model change re-run under the same dataset version is part of it, which is why
    reasons other than "metadata" appear between two dataset versions.

"Newest" is by file modification time in whole seconds, ties broken by path, so that
`sql/version_diff.sql` (DuckDB's `read_blob(...).last_modified`) picks exactly the same files.
Versions are ordered by when they were first ingested (min `ingested_at` of `source_records`, as
the `dataset_versions` view).

Items are compared by key: `image_id` for grouped_metadata, `conversation_id` for the
conversation assets and the selected subset. An item is added, removed, or changed (same key,
different content or lineage). Each change gets its reasons:

    metadata         the image's grouped metadata (captions, boxes, QA, OCR, size, source records) differs
    prompt           the item's prompt (prompt_id) is at a different prompt_version
    model            llm_model / llm_weights of its partition differ
    sampling_config  sampling_config of its partition differs
    code_version     code_version (or filter_version) of its partition differs
    other            none of these (e.g. upstream seeds or clustering, or a non-deterministic model)

Pure: reads Parquet with Polars, imports no Dagster. `sql/version_diff.sql` is the same rules in
DuckDB (`SELECT * FROM version_diff('sample', '<old>', '<new>')` in the catalog); the tests check
that both agree.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from .storage import ParquetStore, safe_name

METADATA_COLUMNS = ("image_key", "width", "height", "image_mode", "image_checked", "captions", "boxes", "qa", "ocr",
                    "sources", "source_record_ids")
CODE_COLUMNS = ("code_version", "filter_version")
MODEL_COLUMNS = ("llm_model", "llm_weights")
PROMPT_COLUMNS = ("prompt_id", "prompt_version")
REASONS = ("metadata", "prompt", "model", "sampling_config", "code_version", "other")
CHANGES = ("added", "removed", "changed")


@dataclass(frozen=True)
class DiffSpec:
    key: str
    content: tuple[str, ...]
    lineage: tuple[str, ...]  # row columns whose difference makes a kept item "changed"


_CONVERSATION = DiffSpec("conversation_id", ("turns",),
                         CODE_COLUMNS + PROMPT_COLUMNS + MODEL_COLUMNS + ("sampling_config",))
SPECS: dict[str, DiffSpec] = {
    "grouped_metadata": DiffSpec("image_id", METADATA_COLUMNS, ("code_version",)),
    "generated_conversations": _CONVERSATION,
    "filtered_conversations": _CONVERSATION,
    "selected_subset": _CONVERSATION,
}
ASSETS = tuple(SPECS)


def _root(store: ParquetStore | str | Path) -> Path:
    return Path(store.root if isinstance(store, ParquetStore) else store).resolve()


def _files(root: Path, asset: str, dataset: str) -> list[Path]:
    base = root / safe_name(asset, "asset") / f"dataset={safe_name(dataset, 'dataset')}"
    return sorted(base.glob("*/*.parquet")) if base.exists() else []


def _file_versions(path: Path) -> list[str]:
    """The dataset versions a data file's rows carry (one, in practice; none when it is empty)."""
    lazy = pl.scan_parquet(path)
    if "dataset_version" not in lazy.collect_schema().names():
        return []
    values = lazy.select(pl.col("dataset_version").unique()).collect().to_series().to_list()
    return sorted(v for v in values if v is not None)


def dataset_versions(store: ParquetStore | str | Path, dataset: str) -> list[dict[str, Any]]:
    """Every ingested version of `dataset`, oldest first: [{dataset_version, ingested_at, source_records}]."""
    frames = []
    for path in _files(_root(store), "source_records", dataset):
        lazy = pl.scan_parquet(path)
        if {"dataset_version", "ingested_at"} <= set(lazy.collect_schema().names()):
            frames.append(lazy.select("dataset_version", "ingested_at").collect())
    if not frames:
        return []
    table = (pl.concat(frames).drop_nulls("dataset_version").group_by("dataset_version")
             .agg(pl.col("ingested_at").min(), pl.len().alias("source_records"))
             .sort("ingested_at", "dataset_version"))
    return table.to_dicts()


def latest_versions(store: ParquetStore | str | Path, dataset: str, n: int = 2) -> list[str]:
    return [v["dataset_version"] for v in dataset_versions(store, dataset)][-n:]


@dataclass(frozen=True)
class _File:
    path: str
    part: str
    dataset_version: str
    rank: int
    mtime: int


def _index(root: Path, asset: str, dataset: str, ranks: dict[str, int]) -> list[_File]:
    out = []
    for path in _files(root, asset, dataset):
        mtime = int(os.stat(path).st_mtime)
        for v in _file_versions(path):
            if v in ranks:  # rows of a version source_records no longer has cannot be placed in time
                out.append(_File(str(path), path.name, v, ranks[v], mtime))
    return out


def _select(files: list[_File], rank: int) -> dict[str, tuple[_File, str]] | None:
    """Per partition file name, the file holding the rows as of the version of this rank (and how found)."""
    if not any(f.rank <= rank for f in files):
        return None  # the asset did not exist yet at this version
    chosen: dict[str, tuple[_File, str]] = {}
    for part in sorted({f.part for f in files}):
        mine = [f for f in files if f.part == part]
        exact = [f for f in mine if f.rank == rank]
        earlier = [f for f in mine if f.rank < rank]
        if exact or earlier:
            tier, pool = ("exact", exact) if exact else ("earlier", earlier)
            chosen[part] = (max(pool, key=lambda f: (f.mtime, f.path)), tier)
        else:
            chosen[part] = (min(mine, key=lambda f: (f.mtime, f.path)), "later")
    return chosen


def _version_ranks(root: Path, dataset: str) -> dict[str, int]:
    return {v["dataset_version"]: i for i, v in enumerate(dataset_versions(root, dataset), 1)}


def asset_rows(store: ParquetStore | str | Path, asset: str, dataset: str, dataset_version: str,
               ranks: dict[str, int] | None = None,
               index: list[_File] | None = None) -> tuple[pl.DataFrame, dict[str, int]] | None:
    """The rows of `asset` as of `dataset_version` (column `_part` names each row's partition file),
    and how many partitions were found exactly / earlier / later; None when the asset was absent.
    (`ranks` and `index` only save re-reading when called repeatedly.)"""
    root = _root(store)
    ranks = ranks if ranks is not None else _version_ranks(root, dataset)
    if dataset_version not in ranks:
        raise ValueError(f"{dataset!r} has no dataset version {dataset_version!r}; known: {list(ranks)}")
    index = index if index is not None else _index(root, asset, dataset, ranks)
    chosen = _select(index, ranks[dataset_version])
    if chosen is None:
        return None
    frames = [pl.read_parquet(f.path).filter(pl.col("dataset_version") == f.dataset_version)
              .with_columns(pl.lit(part).alias("_part")) for part, (f, _) in chosen.items()]
    tiers = Counter(tier for _, tier in chosen.values())
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(schema={"_part": pl.String})
    return frame, {t: tiers.get(t, 0) for t in ("exact", "earlier", "later")}


def _by_key(frame: pl.DataFrame | None, key: str) -> dict[str, dict[str, Any]]:
    if frame is None or key not in frame.columns:
        return {}
    return {r[key]: r for r in frame.to_dicts() if r[key] is not None}


def _values(frame: pl.DataFrame | None, column: str, where: pl.Expr | None = None) -> frozenset:
    if frame is None or column not in frame.columns:
        return frozenset()
    rows = frame.filter(where) if where is not None else frame
    return frozenset(v for v in rows[column].to_list() if v is not None)


def _differ(a: frozenset, b: frozenset) -> bool:
    return bool(a) and bool(b) and a != b


def _changed_columns(old: dict, new: dict, columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if old.get(c) != new.get(c)]


def _asset_changes(asset: str, old: pl.DataFrame | None, new: pl.DataFrame | None,
                   metadata_changed: set[str]) -> list[dict[str, Any]]:
    spec = SPECS[asset]
    o, n = _by_key(old, spec.key), _by_key(new, spec.key)
    lineage_cache: dict[str, set[str]] = {}

    def partition_reasons(part: str) -> set[str]:  # model, sampling and code are constants of a partition
        if part not in lineage_cache:
            where = pl.col("_part") == part
            found = set()
            for reason, cols in (("code_version", CODE_COLUMNS), ("model", MODEL_COLUMNS),
                                 ("sampling_config", ("sampling_config",))):
                if any(_differ(_values(old, c, where), _values(new, c, where)) for c in cols):
                    found.add(reason)
            lineage_cache[part] = found
        return lineage_cache[part]

    def prompt_versions(frame: pl.DataFrame | None, prompt_id: str) -> frozenset:
        if frame is None or "prompt_id" not in frame.columns:
            return frozenset()
        return _values(frame, "prompt_version", pl.col("prompt_id") == prompt_id)

    out = []
    for item in sorted(set(o) | set(n)):
        before, after = o.get(item), n.get(item)
        if before is None:
            change = "added"
        elif after is None:
            change = "removed"
        elif _changed_columns(before, after, spec.content + spec.lineage):
            change = "changed"
        else:
            continue
        row = after if after is not None else before
        assert row is not None  # the item is in one version at least
        image = row.get("image_id")
        reasons = set(partition_reasons(row["_part"]))
        if asset == "grouped_metadata":
            if before is None or after is None or _changed_columns(before, after, METADATA_COLUMNS):
                reasons.add("metadata")
        elif image in metadata_changed:
            reasons.add("metadata")
        pid = row.get("prompt_id")
        if pid is not None and _differ(prompt_versions(old, pid), prompt_versions(new, pid)):
            reasons.add("prompt")
        entry = {"asset": asset, "item_id": item, "image_id": image, "change": change,
                 "reasons": sorted(reasons) or ["other"], "image_key": row.get("image_key")}
        if asset == "grouped_metadata" and before is not None and after is not None:  # changed
            entry["fields"] = _changed_columns(before, after, METADATA_COLUMNS)
        out.append(entry)
    return out


def _compare(store, dataset: str, old: str, new: str, assets,
             keep: dict[str, dict] | None = None) -> tuple[list[dict], dict[str, dict]]:
    """The change records and, per asset, what was found. `keep`, when given, receives each asset's
    {"old": frame, "new": frame}: the rows compared, so a caller can show them without reading twice."""
    root = _root(store)
    ranks = _version_ranks(root, dataset)
    for v in (old, new):
        if v not in ranks:
            raise ValueError(f"{dataset!r} has no dataset version {v!r}; known: {list(ranks)}")
    assets = list(assets)
    if "grouped_metadata" not in assets:
        assets.insert(0, "grouped_metadata")  # every other asset's "metadata" reason comes from it
    changes: list[dict] = []
    info: dict[str, dict] = {}
    metadata_changed: set[str] = set()
    for asset in assets:
        index = _index(root, asset, dataset, ranks)
        got = {side: asset_rows(root, asset, dataset, v, ranks, index) for side, v in (("old", old), ("new", new))}
        frames = {side: g[0] if g else None for side, g in got.items()}
        if keep is not None:
            keep[asset] = frames
        rows = _asset_changes(asset, frames["old"], frames["new"], metadata_changed)
        if asset == "grouped_metadata":
            metadata_changed = {r["image_id"] for r in rows if "metadata" in r["reasons"]}
        key = SPECS[asset].key
        info[asset] = {
            "files": bool(_files(root, asset, dataset)),
            "present": {side: g is not None for side, g in got.items()},
            "rows": {side: (len(_by_key(f, key)) if f is not None else 0) for side, f in frames.items()},
            "partitions": {side: g[1] for side, g in got.items() if g is not None},
        }
        changes.extend(rows)
    return changes, info


def version_changes(store: ParquetStore | str | Path, dataset: str, old: str, new: str,
                    assets=ASSETS) -> pl.DataFrame:
    """One row per added / removed / changed item: asset, item_id, image_id, change, reasons (sorted)."""
    changes, _ = _compare(store, dataset, old, new, assets)
    schema: dict[str, pl.DataType | pl.datatypes.DataTypeClass] = {
        "asset": pl.String, "item_id": pl.String, "image_id": pl.String, "change": pl.String, "reasons": pl.List(pl.String)}
    rows = [{k: c[k] for k in schema} for c in changes if c["asset"] in assets]
    return pl.DataFrame(rows, schema=schema).sort("asset", "item_id")


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


def _pick_versions(store, dataset: str, old: str | None, new: str | None) -> tuple[str, str]:
    """Defaults: `new` the most recent version, `old` the one ingested just before `new`."""
    if old is not None and new is not None:
        return old, new
    ordered = [v["dataset_version"] for v in dataset_versions(store, dataset)]
    new = new if new is not None else (ordered[-1] if ordered else None)
    if new is None or new not in ordered:
        raise ValueError(f"{dataset!r} has no dataset version {new!r}; known: {ordered}")
    if old is None:
        if ordered.index(new) == 0:
            raise ValueError(f"{dataset!r} has no dataset version before {new!r}: a diff needs two")
        old = ordered[ordered.index(new) - 1]
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
    old, new = _pick_versions(store, dataset, old, new)
    changes, info = _compare(store, dataset, old, new, assets)
    out: dict[str, Any] = {"dataset": dataset, "old": old, "new": new, "assets": {}}
    for asset in assets:
        mine = [c for c in changes if c["asset"] == asset]
        meta = info[asset]
        if not meta["files"]:
            out["assets"][asset] = {"absent": True, "present": meta["present"]}
            continue
        counts = Counter(c["change"] for c in mine)
        unchanged = meta["rows"]["new"] - counts["added"] - counts["changed"]
        out["assets"][asset] = {
            "key": SPECS[asset].key, "present": meta["present"], "rows": meta["rows"],
            "partitions": meta["partitions"],
            "counts": {**{k: counts.get(k, 0) for k in CHANGES}, "unchanged": max(unchanged, 0)},
            "reasons": dict(sorted(Counter(r for c in mine for r in c["reasons"]).items())),
            "images": _images(mine, examples),
            "examples": {k: [_example(c) for c in mine if c["change"] == k][:examples] for k in CHANGES},
        }
    return out


def _image_items(frame: pl.DataFrame | None, image: str, key: str) -> dict[str, dict[str, Any]]:
    if frame is None or "image_id" not in frame.columns:
        return {}
    return _by_key(frame.filter(pl.col("image_id") == image), key)


def image_changes(store: ParquetStore | str | Path, dataset: str, image: str, old: str | None = None,
                  new: str | None = None, assets=ASSETS) -> dict[str, Any]:
    """One image across two versions (defaults as `diff_versions`): per asset, each of its items with
    its row in each version (None where it has none) and the change record `diff_versions` counts for
    it (`change` added / removed / changed / unchanged, `reasons`, for grouped_metadata `fields`)."""
    old, new = _pick_versions(store, dataset, old, new)
    kept: dict[str, dict] = {}
    changes, _ = _compare(store, dataset, old, new, assets, keep=kept)
    out: dict[str, Any] = {"dataset": dataset, "image_id": image, "old": old, "new": new, "assets": {}}
    for asset in assets:
        key = SPECS[asset].key
        sides = {side: _image_items(frame, image, key) for side, frame in kept[asset].items()}
        records = {c["item_id"]: c for c in changes if c["asset"] == asset and c["image_id"] == image}
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

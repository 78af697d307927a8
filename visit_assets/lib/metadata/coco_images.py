"""One COCO picture, one image key: how records of COCO's images from different datasets meet.

Grouping makes one record per image key, so two datasets meet on a picture only when they name it
alike. COCO's pictures come under several names:

  * 2014 names, `COCO_<split>2014_<12-digit id>.jpg`, flat or in `<split>2014/` (COCO 2014 captions
    / instances, VQAv2, OK-VQA, RefCOCO, TallyQA; test images as `COCO_test2015_...`);
  * 2017 names, `<split>2017/<12-digit id>.jpg`, or flat `<12-digit id>.jpg` (COCO 2017, A-OKVQA,
    LVIS, Localized Narratives, VSR);
  * other datasets' own names: a Visual Genome image with a `coco_id` (image_data.json) is a COCO
    picture under the name `VG_100K[_2]/<vg id>.jpg`; its loader puts that id in the image row's
    `coco_id` column.

The 12-digit id is the same under every name (COCO ids are unique across splits and years), so it
is the picture's identity. The rule, applied once when a dataset's records are loaded (before image
ids and shards are derived from keys): every key naming COCO picture N becomes one key, the first
of these that is a file in the image folder:

    the COCO zips' own layouts, in this order: train2017/, val2017/, test2017/, unlabeled2017/
    (`<id>.jpg`), train2014/, val2014/, test2014/, test2015/ (`COCO_<folder>_<id>.jpg`), the same
    2014 / 2015 names flat, `<id>.jpg` flat; then the keys the metadata gives (e.g. Visual Genome's)

and when none is on disk, the first of them that some record gives (never the order of the metadata
files). The image folder is looked at when the records are loaded (source_records): files renamed
later are seen at the next ingest. The key is a real path, so the image is found as before, and the loader's
own key stays in `source_image_key`. Keys not of these shapes (an extra folder level, another
extension) are not COCO names here and keep their key. A key with two different ids (a 2014 name
whose Visual Genome row says another coco_id) is left alone rather than guessed.

Visual Genome's coco_id travels on its image rows, which the folder's first annotation file emits
(loaders/visual_genome.py): if dataset.yaml lists only later VG files, VG's records keep VG's key.

Only image keys change: every row stays, so nothing is lost. A dataset without COCO-named keys or
coco_ids is untouched and its image folder never listed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Container
from pathlib import Path

import polars as pl

from .records import IMAGE

# fullmatch patterns: group 1 is the 12-digit COCO id
_NAMED_2014 = r"^(?:[a-z]+20\d\d/)?COCO_[a-z]+20\d\d_(\d{12})\.jpg$"
_NAMED_2017 = r"^(?:[a-z]+2017/)?(\d{12})\.jpg$"
_FOLDERS_2017 = ("train2017", "val2017", "test2017", "unlabeled2017")
_FOLDERS_2014 = ("train2014", "val2014", "test2014", "test2015")
# Most current layout first: a folder holding both namings resolves to the 2017 file.
LAYOUTS = (
    *(f"{f}/{{id}}.jpg" for f in _FOLDERS_2017),
    *(f"{f}/COCO_{f}_{{id}}.jpg" for f in _FOLDERS_2014),
    *(f"COCO_{f}_{{id}}.jpg" for f in _FOLDERS_2014),
    "{id}.jpg",
)
_LAYOUT_PARTS = tuple(tuple(layout.split("{id}")) for layout in LAYOUTS)
_RANK = {layout: n for n, layout in enumerate(LAYOUTS)}


def coco_id_expr(key: pl.Expr) -> pl.Expr:
    """The COCO id a key names by its shape (2014 or 2017 naming), else null."""
    return pl.coalesce(key.str.extract(_NAMED_2014, 1), key.str.extract(_NAMED_2017, 1)).cast(pl.Int64)


def coco_ids_of_keys(records: pl.DataFrame) -> dict[str, int]:
    """{image key: COCO id} for keys that name a COCO picture by shape or by a usable image row's
    coco_id; keys with two different ids are left out."""
    key = pl.col("image_key")
    declared = pl.when((pl.col("kind") == IMAGE) & pl.col("reject_reason").is_null()).then(pl.col("coco_id"))
    ids = (
        records.filter(key.is_not_null())
        .select(key, declared.alias("declared")).unique()  # a key per picture, not per caption / box
        .select(key, pl.concat_list(coco_id_expr(key), "declared").alias("ids"))
        .explode("ids").drop_nulls("ids")
        .group_by("image_key").agg(pl.col("ids").unique())
        .filter(pl.col("ids").list.len() == 1)
    )
    return dict(zip(ids["image_key"].to_list(), ids["ids"].list.first().to_list(), strict=True))


def listed_coco_files(images_dir: Path) -> set[str]:
    """The keys of the files in the image folder's COCO layouts: one directory listing per layout
    folder instead of a stat per candidate name (COCO has 120k pictures, 11 names each)."""
    found: set[str] = set()
    for folder in ("", *_FOLDERS_2017, *_FOLDERS_2014):
        try:
            with os.scandir(images_dir / folder) as entries:
                found.update(f"{folder}/{e.name}" if folder else e.name for e in entries if e.name.endswith(".jpg"))
        except OSError:  # the layout folder is absent (or unreadable: its files are then not found)
            continue
    return found


def canonical_keys(ids: dict[str, int], listed: Container[str], is_file: Callable[[str], bool]) -> dict[str, str]:
    """{key: the picture's key} for every key that changes (module docstring: the rule). `listed`
    holds the files of COCO's layouts (listed_coco_files), `is_file` tells of any other key."""
    by_id: dict[int, list[str]] = {}
    for key, coco_id in ids.items():
        by_id.setdefault(coco_id, []).append(key)
    changes: dict[str, str] = {}
    for coco_id, keys in by_id.items():
        digits = f"{coco_id:012d}"
        chosen = next((name for name in (p + digits + s for p, s in _LAYOUT_PARTS) if name in listed), None)
        if chosen is None:  # no COCO file: the dataset's own name if on disk, else the best name given
            ranked = sorted(keys, key=lambda k: (_RANK.get(k.replace(digits, "{id}"), len(LAYOUTS)), k))
            own = (k for k in ranked if k.replace(digits, "{id}") not in _RANK and is_file(k))
            chosen = next(own, ranked[0])
        changes.update((k, chosen) for k in keys if k != chosen)
    return changes


def merge_coco_keys(records: pl.DataFrame, images_dir: Path | None) -> pl.DataFrame:
    """`records` with every COCO picture under one image key, the loader's key kept in `source_image_key`."""
    records = records.with_columns(pl.col("image_key").alias("source_image_key"))
    ids = coco_ids_of_keys(records)
    if not ids:
        return records
    listed = listed_coco_files(images_dir) if images_dir is not None else set()
    changes = canonical_keys(ids, listed, lambda key: images_dir is not None and (images_dir / key).is_file())
    return records.with_columns(pl.col("image_key").replace(changes)) if changes else records

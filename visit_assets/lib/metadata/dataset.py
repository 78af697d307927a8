"""A dataset is a folder: an image folder plus metadata files, optionally a `dataset.yaml`.

    my_dataset/
      dataset.yaml          optional: {images: images, sources: [{path: x.json, format: coco}]}
      images/...            the photographs (paths in metadata are relative to this folder)
      *.json / *.jsonl / *.parquet   metadata, any depth outside the image folder
      images/00000.tar ...  optional: web-scale shards (WebDataset tar, Parquet of image bytes) at
                            the image folder's top level are sources too; their images stay in them
      conversations/...     optional: already-made VisIT conversations to score and re-select
                            (LLaVA JSON / JSONL / Parquet; not metadata; manifest key `conversations`)

The dataset version is a content hash of the metadata files (names and bytes), so an edit to any
metadata file gives a new version and an untouched folder keeps its version.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from ..ids import content_hash, file_sha256, image_id, shard_of
from .coco_images import merge_coco_keys
from .loaders import METADATA_SUFFIXES, load_source, registry
from .paths import UnsafePath, normalise_image_key, resolve_inside
from .records import empty_source_records

DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MANIFEST = "dataset.yaml"
IMPORTED_DIR = "conversations"


class DatasetError(ValueError):
    """The dataset folder itself is unusable (bad name, bad manifest): a clear error, not rejects."""


def check_dataset_name(name: str) -> str:
    """Dataset names become partition keys, paths and SQL literals: allow a safe alphabet only."""
    if not DATASET_NAME.fullmatch(name or ""):  # match() would let a trailing newline through
        raise DatasetError(f"dataset name {name!r} must match {DATASET_NAME.pattern}")
    return name


@dataclass(frozen=True)
class DatasetLayout:
    name: str
    root: Path
    images_dir: Path
    sources: tuple[tuple[Path, str | None], ...] = field(default_factory=tuple)
    imported: tuple[Path, ...] = field(default_factory=tuple)  # VisIT conversations to re-select
    companions: tuple[Path, ...] = field(default_factory=tuple)  # read by a source's loader, not on their own

    def source_name(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def read_layout(root: Path) -> DatasetLayout:
    root = Path(root)
    name = check_dataset_name(root.name)
    manifest: dict = {}
    if (root / MANIFEST).exists():
        try:
            manifest = yaml.safe_load((root / MANIFEST).read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise DatasetError(f"{root / MANIFEST}: {e}") from None
        if not isinstance(manifest, dict):
            raise DatasetError(f"{root / MANIFEST} must be a mapping")
    images_dir = root / str(manifest.get("images", "images"))
    imported_dir = root / IMPORTED_DIR
    if manifest.get("sources"):
        sources = tuple(_manifest_source(root, s) for s in manifest["sources"])
    else:
        found = _metadata_files(root, (images_dir, imported_dir)) + _shard_files(images_dir)
        sources = tuple((p, None) for p in found)
    sources, companions = _split_companions(sources)
    if manifest.get("conversations"):
        imported = tuple(_manifest_source(root, s)[0] for s in manifest["conversations"])
    else:
        imported = tuple(p for p in sorted(imported_dir.rglob("*")) if p.suffix in METADATA_SUFFIXES and p.is_file())
    return DatasetLayout(name, root, images_dir, sources, imported, companions)


def _split_companions(sources: tuple[tuple[Path, str | None], ...]
                      ) -> tuple[tuple[tuple[Path, str | None], ...], tuple[Path, ...]]:
    """(the sources to load, the files their loaders read with them): a companion is never loaded
    on its own (its records would count twice)."""
    companions: set[Path] = set()
    for path, fmt in sources:
        companions.update(registry.companions_of(path, fmt or registry.detect(path).format))
    kept = tuple((p, f) for p, f in sources if p not in companions)
    return kept, tuple(sorted(companions - {p for p, _ in kept}))


def _manifest_source(root: Path, entry: object) -> tuple[Path, str | None]:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise DatasetError(f"{root / MANIFEST}: each source needs a 'path', got {entry!r}")
    try:
        key = normalise_image_key(entry["path"])
        resolve_inside(root, key)  # refuse sources outside the dataset folder, symlinks included
    except UnsafePath as e:
        raise DatasetError(f"{root / MANIFEST}: {e}") from None
    path = root / key
    if not path.is_file():
        raise DatasetError(f"{root / MANIFEST}: source {entry['path']!r} does not exist")
    return path, entry.get("format")


def _metadata_files(root: Path, skip: tuple[Path, ...]) -> list[Path]:
    """Metadata files under `root`, in path order. The skipped folders (images, imported
    conversations) are pruned, never listed: a COCO-size images folder holds 118k files and this
    runs on every sensor tick and in every shard's run. Symlinked folders are not followed."""
    if root in skip:  # the images are the dataset folder itself: nothing there is metadata
        return []
    found, suffixes = [], registry.metadata_suffixes()  # a plugin's loader may read other files (.tsv)
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if Path(folder, d) not in skip]
        found += [p for p in (Path(folder, f) for f in files)
                  if p.suffix in suffixes and registry.is_metadata_file(p) and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _shard_files(images_dir: Path) -> list[Path]:
    """The shard files at the image folder's top level (img2dataset writes them flat): one listing,
    never a walk of the images. A file there of another format (img2dataset's metadata-only
    `00000.parquet` beside each tar) is not a source."""
    try:
        with os.scandir(images_dir) as entries:
            found = sorted(Path(e.path) for e in entries if e.name.endswith((".tar", ".parquet")) and e.is_file())
    except OSError:
        return []
    shard_formats = {n for n, ld in registry.available().items() if ld.shard}
    return [p for p in found if registry.detect(p).format in shard_formats]


def _shard_keys(frame: pl.DataFrame, path: Path, images_dir: Path) -> pl.DataFrame:
    """A shard loader's member keys as image keys: `<the shard's path under the image folder>/<member>`.
    A shard outside the image folder cannot be opened by key: its rows are unsafe_path rejects."""
    try:
        prefix = path.resolve().relative_to(images_dir.resolve()).as_posix()
    except ValueError:
        outside = pl.col("reject_reason").is_null()
        return frame.with_columns(
            pl.when(outside).then(pl.lit("unsafe_path")).otherwise(pl.col("reject_reason")).alias("reject_reason"),
            pl.when(outside).then(pl.lit(f"shard {path.name} is outside the image folder"))
            .otherwise(pl.col("reject_detail")).alias("reject_detail"),
            pl.lit(None, pl.String).alias("image_key"))
    return frame.with_columns(pl.format("{}/{}", pl.lit(prefix), pl.col("image_key")).alias("image_key"))


def _load(layout: DatasetLayout, path: Path, fmt: str | None) -> pl.DataFrame:
    frame = load_source(path, layout.source_name(path), fmt)
    formats = frame.get_column("source_format").unique().to_list()
    if any(f in registry.available() and registry.get(f).shard for f in formats):
        return _shard_keys(frame, path, layout.images_dir)
    return frame


def dataset_version(layout: DatasetLayout) -> str:
    """Content hash of every metadata file (name + bytes) and of the manifest."""
    parts = [(layout.source_name(p), fmt, file_sha256(p)) for p, fmt in layout.sources]
    parts += [(layout.source_name(p), "imported", file_sha256(p)) for p in layout.imported]
    parts += [(layout.source_name(p), "companion", file_sha256(p)) for p in layout.companions]
    manifest = layout.root / MANIFEST
    if manifest.exists():
        parts.append((MANIFEST, None, file_sha256(manifest)))
    return content_hash("dataset", parts)


def fingerprint(root: Path) -> str:
    """Cheap change detector for sensors: names, sizes and mtimes of the metadata files."""
    layout = read_layout(root)
    files = [p for p, _ in layout.sources] + list(layout.imported) + list(layout.companions)
    stats = [(layout.source_name(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return content_hash("fingerprint", stats)


def load_dataset(layout: DatasetLayout, n_shards: int) -> pl.DataFrame:
    """All source records of a dataset, with `image_id` and `shard` columns (rejects included)."""
    frames = [_load(layout, p, fmt) for p, fmt in layout.sources]
    records = pl.concat(frames, how="vertical") if frames else empty_source_records()
    records = merge_coco_keys(records, layout.images_dir)  # before ids and shards: they follow the key
    keys = records.get_column("image_key").drop_nulls().unique().to_list()
    ids = pl.DataFrame(
        {
            "image_key": keys,
            "image_id": [image_id(layout.name, k) for k in keys],
            "shard": [shard_of(k, n_shards) for k in keys],
        },
        schema={"image_key": pl.String, "image_id": pl.String, "shard": pl.Int32},
    )
    records = records.with_row_index("record_order").join(ids, on="image_key", how="left")
    # Records with no image (a broken file) still need a home: shard 0 carries them.
    return records.with_columns(pl.col("shard").fill_null(0)).sort("shard", "record_order")

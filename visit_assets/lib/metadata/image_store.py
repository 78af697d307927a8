"""One way to open an image by its key: a file under the image folder, or a member of a shard.

An image key is a posix path relative to the dataset's image folder. Its first component that
names a *file* ending in `.tar` or `.parquet` (not a folder of that name) is a shard, and the rest
of the key is the image inside it:

    photos/cat.jpg                      the file images/photos/cat.jpg (as always)
    00000.tar/000000123.jpg             the member `000000123.jpg` of the tar images/00000.tar
    cc12m/00003.parquet/000030017       the row whose `key` is 000030017 in images/cc12m/00003.parquet

Nothing is extracted: a tar member is read by seeking to its data (an index of member offsets is
built once per tar and cached, since a tar can only be scanned front to back); a Parquet row is
read from its row group's image column only. The shard's path is checked with `resolve_inside`
like any file, and member names are normalised like keys, so no key reaches outside the folder.

Parquet image shards (the column convention, docs/loaders.md "Web-scale shards"): the image bytes
are the first of the columns `jpg`, `png`, `webp` (binary; img2dataset's `output_format parquet`
names the column after its encode format) or `image` (binary, or a struct with a `bytes` field as
Hugging Face datasets write it); a row's key is its `key` column (img2dataset's) when there is one,
else its 0-based row index.
"""

from __future__ import annotations

import io
import tarfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from .paths import UnsafePath, normalise_image_key, resolve_inside

SHARD_SUFFIXES = (".tar", ".parquet")
PARQUET_IMAGE_COLUMNS = ("jpg", "png", "webp", "image")  # the first present holds the bytes
PARQUET_KEY_COLUMN = "key"


class ImageNotFound(FileNotFoundError):
    """No file or shard member under that key."""


@dataclass(frozen=True)
class Location:
    """Where a key's bytes are: `path` a file, or a shard with the `member` inside it."""

    path: Path
    member: str | None = None


def locate(images_dir: Path, key: str) -> Location:
    """The file or shard member a key names; UnsafePath when it leaves the folder. Existence of a
    plain file is not checked here (callers say image_missing their own way)."""
    parts = normalise_image_key(key).split("/")
    for i, part in enumerate(parts[:-1]):
        if part.endswith(SHARD_SUFFIXES):
            shard = resolve_inside(images_dir, "/".join(parts[: i + 1]))
            if shard.is_file():  # a folder called x.tar is just a folder
                return Location(shard, "/".join(parts[i + 1 :]))
    return Location(resolve_inside(images_dir, "/".join(parts)))


# -- tar ---------------------------------------------------------------------------------------

Stamp = tuple[str, int, int]
MAX_INDEXES = 512  # shards whose index a process keeps (a 10k-member tar's is ~1 MB)
_lock = threading.Lock()
_indexes: OrderedDict[Stamp, object] = OrderedDict()  # least recently used first
index_builds = 0  # how many tar / parquet indexes were built (tests check each is built once)


def _cached(stamp: Stamp, build):
    """The index of a shard version, built once under the lock (the QC threads ask at once)."""
    global index_builds
    with _lock:
        if stamp in _indexes:
            _indexes.move_to_end(stamp)
            return _indexes[stamp]
        found = _indexes[stamp] = build()
        index_builds += 1
        if len(_indexes) > MAX_INDEXES:
            _indexes.popitem(last=False)
        return found


def _stamp(path: Path) -> Stamp:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns  # a rewritten shard gets a new index


def tar_index(path: Path) -> dict[str, tuple[int, int]]:
    """{member name: (data offset, size)} of a tar's regular files, built once per tar version.
    Links and special members are left out (a link could point anywhere)."""

    def build() -> dict[str, tuple[int, int]]:
        found = {}
        with tarfile.open(path, "r:") as tar:  # "r:": uncompressed only, so members are seekable
            for info in tar:  # reads the headers only, seeking over the data
                if info.isreg():
                    try:
                        found[normalise_image_key(info.name)] = (info.offset_data, info.size)
                    except UnsafePath:
                        continue  # a member named ../x is never addressable
        return found

    return _cached(_stamp(path), build)


def _read_tar_member(path: Path, member: str) -> bytes:
    where = tar_index(path).get(member)
    if where is None:
        raise ImageNotFound(f"no member {member} in {path.name}")
    offset, size = where
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"{path.name}/{member}: truncated shard")
    return data


# -- parquet -----------------------------------------------------------------------------------

def parquet_image_column(names: list[str]) -> str | None:
    return next((c for c in PARQUET_IMAGE_COLUMNS if c in names), None)


def parquet_index(path: Path) -> tuple[str, dict[str, tuple[int, int]]]:
    """(image column, {row key: (row group, row in group)}), reading only the key column."""
    import pyarrow.parquet as pq

    def build() -> tuple[str, dict[str, tuple[int, int]]]:
        pf = pq.ParquetFile(path)
        column = parquet_image_column(pf.schema_arrow.names)
        if column is None:
            raise OSError(f"{path.name} has no image column ({', '.join(PARQUET_IMAGE_COLUMNS)})")
        rows: dict[str, tuple[int, int]] = {}
        has_key = PARQUET_KEY_COLUMN in pf.schema_arrow.names
        start = 0
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            keys = (pf.read_row_group(g, columns=[PARQUET_KEY_COLUMN]).column(0).to_pylist() if has_key
                    else [None] * n)
            rows.update((parquet_row_key(start + i, k), (g, i)) for i, k in enumerate(keys))
            start += n
        return column, rows

    found = _cached(_stamp(path), build)
    assert isinstance(found, tuple)
    return found


@lru_cache(maxsize=4)
def _row_group_images(stamp: Stamp, group: int, column: str):
    """One row group's image column: QC reads a shard's images in key order, so the next image is
    mostly in the row group just read (a few are kept, each ~ rows x image size)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(stamp[0]).read_row_group(group, columns=[column]).column(0)


def parquet_row_key(row: int, key: object) -> str:
    """A Parquet row's key: its `key` value, else its row index (the loader and the opener agree)."""
    return str(key) if key is not None else str(row)


def _read_parquet_row(path: Path, member: str) -> bytes:
    column, rows = parquet_index(path)
    where = rows.get(member)
    if where is None:
        raise ImageNotFound(f"no row {member} in {path.name}")
    group, i = where
    value = _row_group_images(_stamp(path), group, column)[i].as_py()
    data = value.get("bytes") if isinstance(value, dict) else value
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise ImageNotFound(f"row {member} of {path.name} has no image bytes")
    return bytes(data)


# -- the opener --------------------------------------------------------------------------------


def read_bytes(images_dir: Path, key: str) -> bytes:
    """The image's bytes. Raises UnsafePath, ImageNotFound (a FileNotFoundError) or OSError."""
    loc = locate(images_dir, key)
    if loc.member is None:
        if not loc.path.is_file():
            raise ImageNotFound(f"no file at {key}")
        return loc.path.read_bytes()
    if loc.path.suffix == ".tar":
        return _read_tar_member(loc.path, loc.member)
    return _read_parquet_row(loc.path, loc.member)


def open_image_file(images_dir: Path, key: str) -> BinaryIO:
    """A binary file object of the image: the file itself, or the member's bytes in memory."""
    loc = locate(images_dir, key)
    if loc.member is None:
        if not loc.path.is_file():
            raise ImageNotFound(f"no file at {key}")
        return open(loc.path, "rb")
    return io.BytesIO(read_bytes(images_dir, key))


def exists(images_dir: Path, key: str) -> bool:
    """Whether the key names a file or a shard member (False for an unsafe key)."""
    try:
        loc = locate(images_dir, key)
        if loc.member is None:
            return loc.path.is_file()
        if loc.path.suffix == ".tar":
            return loc.member in tar_index(loc.path)
        return loc.member in parquet_index(loc.path)[1]
    except (UnsafePath, OSError, ValueError):
        return False


def image_size(images_dir: Path, key: str) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels."""
    from PIL import Image

    with open_image_file(images_dir, key) as f, Image.open(f) as im:
        return im.size


@dataclass(frozen=True)
class ImageRef:
    """An image to open later (picklable: it crosses to decode worker processes)."""

    images_dir: Path
    key: str

    def open(self) -> BinaryIO:
        return open_image_file(self.images_dir, self.key)

    def __str__(self) -> str:
        return self.key

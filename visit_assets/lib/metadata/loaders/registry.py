"""The loader registry: every metadata format the product reads, built in or added by a plugin.

A loader is a `Loader`: a name (what `format:` says in dataset.yaml), a `load(path, source)` that
turns one metadata file into source records (`..records`: every input record a row, unusable ones
with a `reject_reason`), and optionally:

* `detect(path, head) -> int`: how surely it recognises a file from its name and first 64 KB:
  0 no, 1 by the generic structure (a JSON object with an "annotations" list), 2 by a signature
  only its format has. Detection takes the single highest claim; a tie is `ambiguous_format` (the
  user names the format in dataset.yaml), nothing at all `unknown_format`.
* `companions(path) -> list[Path]`: files it reads together with this one (VQAv2's annotations
  beside its questions). They are part of the dataset version and are not loaded on their own.
* `scans(path) -> bool`: which files with its suffixes a dataset folder scan takes (default all),
  for a common suffix: Flickr30k Entities' `.txt` files only in a `Sentences` folder.
* `shard`: the file holds the images themselves (WebDataset tar, Parquet of image bytes): it sits
  in the image folder and its keys are members of it (..image_store).

Another package adds loaders without editing this one, through the entry-point group
`visit_assets.loaders`: each entry point names a `Loader` (or a function returning one), and its
name must be the loader's. docs/loaders.md shows a complete one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path

import polars as pl

ENTRY_POINT_GROUP = "visit_assets.loaders"
HEAD_BYTES = 1 << 16  # what detection reads of each file
NO, STRUCTURE, SIGNATURE = 0, 1, 2  # detection claims


class LoaderError(ValueError):
    """A plugin loader that cannot be used (wrong type, a name taken): said when the registry loads."""


@dataclass(frozen=True)
class Loader:
    name: str
    load: Callable[[Path, str], pl.DataFrame]
    detect: Callable[[Path, bytes], int] | None = None
    companions: Callable[[Path], list[Path]] | None = None
    description: str = ""
    suffixes: tuple[str, ...] = (".json",)  # file suffixes it reads: a dataset folder is scanned for these
    origin: str = "built in"  # the distribution a plugin came from
    # which files with its suffixes a folder scan takes (None: all); for a common suffix such as
    # .txt, so that a stray notes.txt is not a source
    scans: Callable[[Path], bool] | None = None
    # the file is an image shard (a tar, a Parquet of image bytes) kept in the image folder: its
    # image keys are its member names, prefixed with its path under the image folder when loaded
    shard: bool = False


def _builtin() -> list[Loader]:
    from . import builtin

    return builtin.LOADERS


def _plugin(ep) -> Loader:
    obj = ep.load()
    loader = obj if isinstance(obj, Loader) else obj() if callable(obj) else obj
    if not isinstance(loader, Loader):
        raise LoaderError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) is not a Loader")
    if loader.name != ep.name:
        raise LoaderError(f"entry point {ep.name} = {ep.value} names a loader called {loader.name!r}")
    dist = getattr(ep, "dist", None)
    return Loader(loader.name, loader.load, loader.detect, loader.companions, loader.description, loader.suffixes,
                  origin=f"plugin {dist.name if dist else ep.value}", scans=loader.scans, shard=loader.shard)


@lru_cache(maxsize=1)
def available() -> dict[str, Loader]:
    """Every loader by name: the built-in ones, then the plugins' (a plugin may not take a built-in's name)."""
    found = {loader.name: loader for loader in _builtin()}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        loader = _plugin(ep)
        if loader.name in found:
            raise LoaderError(f"{loader.origin} registers a loader named {loader.name!r}, which "
                              f"{found[loader.name].origin} already is; rename the plugin's entry point")
        found[loader.name] = loader
    return found


def metadata_suffixes() -> tuple[str, ...]:
    """The file suffixes some loader reads: what a dataset folder is scanned for."""
    return tuple(sorted({s for loader in available().values() for s in loader.suffixes}))


def is_metadata_file(path: Path) -> bool:
    """Whether a dataset folder scan takes the file: some loader reads its suffix and, when that
    loader narrows its scan (`scans`), takes the file."""
    return any(path.suffix in ld.suffixes and (ld.scans is None or ld.scans(path)) for ld in available().values())


def get(name: str) -> Loader:
    loaders = available()
    if name not in loaders:
        raise ValueError(f"unknown metadata format {name!r}; known: {sorted(loaders)}")
    return loaders[name]


@dataclass(frozen=True)
class Detection:
    format: str | None
    reason: str | None = None  # unknown_format | ambiguous_format
    detail: str = ""


def detect(path: Path) -> Detection:
    """The format of one file from its name and first bytes (module docstring: the claims)."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    claims = {name: (loader.detect(path, head) if loader.detect else NO) for name, loader in available().items()}
    best = max(claims.values(), default=NO)
    if best == NO:
        return Detection(None, "unknown_format", f"no loader recognises it (loaders: {', '.join(sorted(claims))})")
    top = sorted(n for n, c in claims.items() if c == best)
    if len(top) > 1:
        return Detection(None, "ambiguous_format",
                         f"{' and '.join(top)} all recognise it; name its format in dataset.yaml")
    return Detection(top[0])


def companions_of(path: Path, fmt: str | None) -> list[Path]:
    """The existing files a source of format `fmt` reads together with `path`."""
    loader = available().get(fmt) if fmt else None
    if loader is None or loader.companions is None:
        return []
    return [p for p in loader.companions(path) if p != path and p.is_file()]

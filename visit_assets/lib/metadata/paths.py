"""Untrusted image paths from metadata: normalise, and refuse anything that leaves the dataset."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class UnsafePath(ValueError):
    pass


def normalise_image_key(raw: object) -> str:
    """Return a clean posix path relative to the image folder, or raise UnsafePath."""
    if not isinstance(raw, str) or not raw.strip():
        raise UnsafePath(f"image path must be a non-empty string, got {raw!r}")
    text = raw.strip().replace("\\", "/")
    if "\x00" in text:
        raise UnsafePath("image path contains a NUL byte")
    p = PurePosixPath(text)
    if p.is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise UnsafePath(f"absolute image path {raw!r}")
    parts = [part for part in p.parts if part not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafePath(f"image path {raw!r} leaves the image folder")
    return "/".join(parts)


def resolve_inside(root: Path, key: str) -> Path:
    """Resolve `key` under `root`, following symlinks; raise UnsafePath if the target is outside."""
    root_real = Path(os.path.realpath(root))
    target = Path(os.path.realpath(root_real / key))
    if target != root_real and root_real not in target.parents:
        raise UnsafePath(f"{key!r} resolves outside the dataset folder")
    return target

"""Content-hash ids and fingerprints: every id in the product is derived from content, never random."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ID_HEX = 16  # 64-bit ids: collision odds ~1e-9 at 100M rows


def stable_json(value: Any) -> str:
    """Canonical JSON (sorted keys, no whitespace) so equal values always hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(*parts: Any, length: int = ID_HEX) -> str:
    """Hex blake2b of the canonical JSON of `parts`."""
    digest = hashlib.blake2b(stable_json(parts).encode("utf-8"), digest_size=32).hexdigest()
    return digest[:length]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def image_id(dataset: str, image_key: str) -> str:
    """An image's id: stable across dataset versions, so lineage can follow one image over time."""
    return content_hash("image", dataset, image_key)


def shard_of(key: str, n_shards: int) -> int:
    """Shard of an image key; the same function everywhere so shards never disagree."""
    return int(hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest(), 16) % n_shards

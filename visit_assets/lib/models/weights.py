"""Weights on disk: identity hashes of checkpoint files and folders, and hub-free loading.

Shared by every model wrapper (LLM GGUFs, embedder, CLIP, reward model), so the same file always
gets the same identity, hashed once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visit_assets.lib.environment import environment
from visit_assets.lib.ids import file_sha256

# Files that hold weights, in the order transformers prefers them within one folder.
_WEIGHT_SUFFIX_GROUPS = ((".safetensors",), (".bin",), (".pt", ".pth"))
# Alternative-backend exports that the torch backend never loads.
_SKIP_DIRS = {"onnx", "openvino", ".git", ".cache"}

_OFFLINE_LOCK = threading.RLock()
_HASH_LOCK = threading.Lock()
_HASH_MEMO: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime) -> sha256


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Forbid Hugging Face hub network calls for the duration (env vars + the already-read constant).

    huggingface_hub reads HF_HUB_OFFLINE at import time, so the module constant is patched too.
    Used around loads of local files, where any hub request would be an accident.
    """
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    with _OFFLINE_LOCK, environment({k: "1" for k in keys}):
        constants: Any = None
        saved_const = None
        try:
            from huggingface_hub import constants

            saved_const = constants.HF_HUB_OFFLINE
            constants.HF_HUB_OFFLINE = True
        except Exception:  # huggingface_hub missing or restructured: env vars still apply
            constants = None
        try:
            yield
        finally:
            if constants is not None:
                constants.HF_HUB_OFFLINE = saved_const


def cached_file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, memoised per (resolved path, size, mtime) so big checkpoints hash once."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        hit = _HASH_MEMO.get(key)
    if hit is None:
        hit = file_sha256(p)
        with _HASH_LOCK:
            _HASH_MEMO[key] = hit
    return hit


def weight_files(folder: str | Path) -> list[Path]:
    """The weight files a torch load of `folder` reads (per sub-folder: safetensors, else .bin, else .pt)."""
    root = Path(folder)
    by_dir: dict[Path, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        rel_parts = p.relative_to(root).parts
        if any(part in _SKIP_DIRS for part in rel_parts[:-1]) or not p.is_file():
            continue
        by_dir.setdefault(p.parent, []).append(p)
    chosen: list[Path] = []
    for files in by_dir.values():
        for suffixes in _WEIGHT_SUFFIX_GROUPS:
            group = [f for f in files if f.suffix in suffixes]
            if group:
                chosen.extend(group)
                break
    return sorted(chosen)


def weights_sha256(folder: str | Path) -> str:
    """Identity hash of a checkpoint folder's weights.

    One weight file: its plain sha256 (so it matches `sha256sum`). Several (sharded, or modules in
    sub-folders): sha256 over sorted "relative/path:sha256" lines.
    """
    root = Path(folder)
    files = weight_files(root)
    if not files:
        raise FileNotFoundError(f"no weight files (*.safetensors, *.bin, *.pt) under {root}")
    if len(files) == 1:
        return cached_file_sha256(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}:{cached_file_sha256(f)}\n".encode())
    return h.hexdigest()


def hub_snapshot_dir(repo_id: str) -> Path | None:
    """The local snapshot folder of a hub repo if it is already cached, else None (never downloads)."""
    try:
        from huggingface_hub import snapshot_download

        with hub_offline():
            return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        return None

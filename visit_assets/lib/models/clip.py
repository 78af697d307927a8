"""CLIP image/text embeddings through open_clip, with honest identities.

`pretrained` is an open_clip tag (downloaded once on a connected machine, e.g. "laion2b_s34b_b79k")
or a local checkpoint file. Without it the encoder is *unavailable*: its identity says UNCONFIGURED
and encoding raises `ClipUnavailableError`, unless `allow_random_init=True`, which builds the
architecture with (seeded) random weights so the real code path runs offline; the identity then
says RANDOM_INIT and every score made with it is meaningless by construction.

Image decoding and preprocessing overlap inference (decode_pool.py, per image image_prep.py).
An image that cannot be read gives a NaN row and an error string; it never fails the batch.
Finding a downloaded tag's checkpoint is clip_cache.py; torch thread control and the
OMP_WAIT_POLICY note are threads.py.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from visit_assets.lib.models.clip_cache import cached_checkpoint_for_tag
from visit_assets.lib.models.decode_pool import BATCHERS, LOADERS, default_decode_workers
from visit_assets.lib.models.identity import RANDOM_INIT, UNCONFIGURED, ModelIdentity
from visit_assets.lib.models.image_prep import ImagePrep, ImageSource
from visit_assets.lib.models.threads import torch_num_threads
from visit_assets.lib.models.weights import cached_file_sha256, hub_offline

log = logging.getLogger(__name__)

DEFAULT_ARCH = "ViT-B-32"

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


class ClipUnavailableError(RuntimeError):
    """Encoding was requested from a CLIP encoder that has no weights configured."""


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (split after . ! ? and their CJK forms); [text] when there is no split."""
    parts = [s.strip() for s in _SENTENCE_END.split(text.strip())]
    parts = [s for s in parts if s]
    return parts or [text]


class ClipEncoder:
    """open_clip CLIP encoder: L2-normalised float32 image and text embeddings, loaded lazily."""

    def __init__(
        self,
        arch: str = DEFAULT_ARCH,
        pretrained: str | None = None,
        allow_random_init: bool = False,
        device: str = "cpu",
        batch_size: int = 32,
        num_workers: int | None = None,
        *,
        loader: str = "threads",
        torch_threads: int | None = None,
        precision: str = "fp32",
        text_batch_size: int = 256,
        cache_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        if loader not in LOADERS:
            raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
        self.arch = arch
        self.pretrained = pretrained or None
        self.allow_random_init = bool(allow_random_init)
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.num_workers = default_decode_workers() if num_workers is None else max(0, int(num_workers))
        self.loader = loader
        self.torch_threads = torch_threads
        self.precision = precision
        self.text_batch_size = max(1, int(text_batch_size))
        self.cache_dir = cache_dir
        self.seed = seed
        self._model = None
        self._preprocess = None
        self._prep: ImagePrep | None = None
        self._tokenizer = None
        self._checkpoint_path: str | None = None
        self._identity: ModelIdentity | None = None
        self._lock = threading.Lock()

    # -- configuration ---------------------------------------------------------------------
    @property
    def pretrained_file(self) -> str | None:
        """`pretrained` as an existing local file, else None (it is a tag, or unset)."""
        if self.pretrained is None:
            return None
        p = os.path.expanduser(self.pretrained)
        return p if os.path.isfile(p) else None

    @property
    def available(self) -> bool:
        """True when encoding can run: weights configured, or random init explicitly allowed."""
        return self.pretrained is not None or self.allow_random_init

    @property
    def random_init(self) -> bool:
        return self.pretrained is None and self.allow_random_init

    def _weights_label(self) -> str:
        if self.pretrained is None:
            return RANDOM_INIT if self.allow_random_init else UNCONFIGURED
        f = self.pretrained_file
        return Path(f).name if f else self.pretrained

    @property
    def identity(self) -> ModelIdentity:
        if self._identity is not None:
            return self._identity
        name = f"open_clip:{self.arch}/{self._weights_label()}"
        if self.pretrained is None:
            weights = RANDOM_INIT if self.allow_random_init else UNCONFIGURED
            self._identity = ModelIdentity(name, weights, "clip")
            return self._identity
        path = self._checkpoint_path or self.pretrained_file
        if path is None:
            path = cached_checkpoint_for_tag(self.arch, self.pretrained, self.cache_dir)
        if path is None:
            # tag not downloaded yet: name it; not memoised, the load will locate the file
            return ModelIdentity(name, f"tag:{self.pretrained}", "clip")
        self._identity = ModelIdentity(name, cached_file_sha256(path), "clip")
        return self._identity

    # -- loading -----------------------------------------------------------------------------
    def _require_available(self) -> None:
        if not self.available:
            raise ClipUnavailableError(
                f"CLIP {self.arch}: no weights configured (pretrained=None). Set `pretrained` to an "
                "open_clip tag (e.g. 'laion2b_s34b_b79k'; downloads once on a connected machine) or a "
                "local checkpoint file (env VISIT_CLIP_PRETRAINED), or pass allow_random_init=True to "
                "exercise the code path with random weights (scores are then meaningless)."
            )

    def _ensure_loaded(self) -> None:
        if self._model is None:
            self._require_available()
            with self._lock:
                if self._model is None:
                    self._load()

    def _load(self) -> None:
        import open_clip
        import torch

        if self.random_init:
            log.warning(
                "CLIP %s built with RANDOM weights (allow_random_init=True): embeddings and scores "
                "are meaningless; identity weights=%s",
                self.arch,
                RANDOM_INIT,
            )
            with hub_offline(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.arch,
                    pretrained=None,
                    pretrained_image=False,
                    pretrained_text=False,
                    precision=self.precision,
                    device=self.device,
                )
                tokenizer = open_clip.get_tokenizer(self.arch)
            checkpoint = None
        elif self.pretrained_file is not None:
            checkpoint = self.pretrained_file
            with hub_offline():
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.arch,
                    pretrained=checkpoint,
                    precision=self.precision,
                    device=self.device,
                    cache_dir=self.cache_dir,
                )
                tokenizer = open_clip.get_tokenizer(self.arch)
        else:
            tag = self.pretrained
            assert tag is not None  # available, not random init, not a file: a tag
            if not open_clip.get_pretrained_cfg(self.arch, tag):
                raise ValueError(
                    f"CLIP pretrained={tag!r} is neither an existing file nor an open_clip tag for "
                    f"{self.arch}; known tags: {open_clip.list_pretrained_tags_by_model(self.arch)}"
                )
            # the user's opt-in: may download (once) into the open_clip / HF cache
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.arch, pretrained=tag, precision=self.precision, device=self.device, cache_dir=self.cache_dir
            )
            tokenizer = open_clip.get_tokenizer(self.arch, cache_dir=self.cache_dir)
            checkpoint = cached_checkpoint_for_tag(self.arch, tag, self.cache_dir)
        model.eval()
        self._checkpoint_path = checkpoint
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self._identity = None  # recompute from the file actually loaded
        self._model = model

    @property
    def model(self):
        self._ensure_loaded()
        return self._model

    @property
    def preprocess(self) -> Callable:
        self._ensure_loaded()
        return self._preprocess  # type: ignore[return-value]

    @property
    def image_prep(self) -> ImagePrep:
        preprocess = self.preprocess
        if self._prep is None or self._prep.preprocess is not preprocess:
            self._prep = ImagePrep(preprocess, split=not str(self.device).startswith("cpu"))
        return self._prep

    @property
    def tokenizer(self) -> Callable:
        self._ensure_loaded()
        return self._tokenizer  # type: ignore[return-value]

    @property
    def dim(self) -> int:
        out = getattr(getattr(self.model, "visual", None), "output_dim", None)
        if isinstance(out, int):
            return out
        return int(self.encode_texts(["dimension probe"]).shape[1])

    def _model_dtype(self):
        return next(self.model.parameters()).dtype

    # -- images ------------------------------------------------------------------------------
    def encode_images(self, paths: Sequence[ImageSource]) -> tuple[np.ndarray, list[str | None]]:
        """Embed images (file paths, or image keys as image_store.ImageRef): (float32 [N, dim]
        L2-normalised, per-image error or None).

        A file that cannot be decoded gives a row of NaN and its error string.
        """
        import torch

        self._ensure_loaded()
        names = list(paths)
        dim = self.dim
        out = np.full((len(names), dim), np.nan, dtype=np.float32)
        errors: list[str | None] = [None] * len(names)
        if not names:
            return out, errors
        dtype = self._model_dtype()
        prep = self.image_prep
        batches = BATCHERS[self.loader](names, prep, self.batch_size, self.num_workers)
        with torch_num_threads(self.torch_threads), torch.inference_mode():
            for start, items in batches:
                ok_rows, tensors = [], []
                for j, (tensor, err) in enumerate(items):
                    if err is None:
                        ok_rows.append(start + j)
                        tensors.append(tensor)
                    else:
                        errors[start + j] = err
                if not tensors:
                    continue
                x = prep.batch(tensors, self.device, dtype)
                emb = self.model.encode_image(x, normalize=True)
                out[ok_rows] = emb.float().cpu().numpy()
        return out, errors

    # -- texts -------------------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [N, dim] L2-normalised; the tokenizer truncates each text at 77 tokens."""
        import torch

        self._ensure_loaded()
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = []
        with torch_num_threads(self.torch_threads), torch.inference_mode():
            for s in range(0, len(texts), self.text_batch_size):
                tokens = self.tokenizer(texts[s : s + self.text_batch_size]).to(self.device)
                chunks.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def encode_long_texts(self, texts: Sequence[str], max_sentences: int = 10) -> np.ndarray:
        """Texts longer than CLIP's 77 tokens: mean of the first `max_sentences` sentence embeddings,
        renormalised (InstructionGPT-4's recipe for long answers). One sentence == encode_texts."""
        if max_sentences < 1:
            raise ValueError("max_sentences must be >= 1")
        per_text = [split_sentences(str(t))[:max_sentences] for t in texts]
        flat = [s for sents in per_text for s in sents]
        if not flat:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.encode_texts(flat)
        out = np.empty((len(per_text), emb.shape[1]), dtype=np.float32)
        i = 0
        for k, sents in enumerate(per_text):
            mean = emb[i : i + len(sents)].mean(axis=0)
            out[k] = mean / max(float(np.linalg.norm(mean)), 1e-12)
            i += len(sents)
        return out

    def __repr__(self) -> str:
        return (
            f"ClipEncoder(arch={self.arch!r}, weights={self._weights_label()!r}, device={self.device!r}, "
            f"loaded={self._model is not None})"
        )

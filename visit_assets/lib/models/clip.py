"""CLIP image/text embeddings through open_clip, with honest identities.

`pretrained` is an open_clip tag (downloaded once on a connected machine, e.g. "laion2b_s34b_b79k")
or a local checkpoint file. Without it the encoder is *unavailable*: its identity says UNCONFIGURED
and encoding raises `ClipUnavailableError`, unless `allow_random_init=True`, which builds the
architecture with (seeded) random weights so the real code path runs offline; the identity then
says RANDOM_INIT and every score made with it is meaningless by construction.

Image decoding and preprocessing overlap inference: a thread pool (default) or a torch
DataLoader with worker processes prepares the next batch while the model runs on the current one
(bench/clip_throughput.py compares them). An image that cannot be read gives a NaN row and an
error string; it never fails the batch.

CPU note: torch's OpenMP threads busy-wait between ops. On a host whose cores other processes also
use, that spinning can cost several-fold; export OMP_WAIT_POLICY=PASSIVE before the process starts
(it is read when torch loads, so library code cannot set it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from visit_assets.lib.models.identity import RANDOM_INIT, UNCONFIGURED, ModelIdentity
from visit_assets.lib.models.weights import cached_file_sha256, hub_offline

log = logging.getLogger(__name__)

DEFAULT_ARCH = "ViT-B-32"
Loader = Literal["threads", "dataloader"]  # how images are decoded (ClipResource.loader)
LOADERS: tuple[str, ...] = get_args(Loader)

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


class ClipUnavailableError(RuntimeError):
    """Encoding was requested from a CLIP encoder that has no weights configured."""


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_decode_workers() -> int:
    return max(2, min(8, usable_cpus() // 2))


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (split after . ! ? and their CJK forms); [text] when there is no split."""
    parts = [s.strip() for s in _SENTENCE_END.split(text.strip())]
    parts = [s for s in parts if s]
    return parts or [text]


# Modes open_clip's preprocess handles as the reference loop does (resize, then convert to RGB).
# Others (palette, bilevel, CMYK, 16/32-bit) go to RGB first: PIL resizes palette images with
# nearest neighbour, and high-bit modes would be clipped after resampling.
_RESIZE_AS_IS = {"RGB", "RGBA", "L", "LA"}


def open_image(path: str | os.PathLike):
    """Decode an image file fully (truncated/corrupt files raise here, not later)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        return im if im.mode in _RESIZE_AS_IS else im.convert("RGB")


class ImagePrep:
    """Per-image work for the decode workers, and the per-batch finish on the main thread.

    split=False (CPU default): the worker decodes and runs open_clip's whole preprocess; the main
    thread only stacks. Measured fastest on 2 cores (bench/clip_throughput.py): all per-image work
    overlaps inference.
    split=True (GPU default): the worker decodes and runs the PIL transforms (resize, crop, RGB)
    -> uint8 HWC array; the main thread moves the uint8 batch to the device (4x fewer bytes than
    float) and does ToTensor's /255 and Normalize there. Bit-identical to `preprocess(image)`.
    A preprocess that is not [PIL ops..., ToTensor, Normalize...] always runs whole in the worker.
    """

    def __init__(self, preprocess: Callable, split: bool = False) -> None:
        self.preprocess = preprocess
        self.pil_stage: Callable | None = None
        self.tensor_stage: list[Callable] = []
        if not split:
            return
        try:
            from torchvision.transforms import Compose, Normalize, ToTensor
        except Exception:  # pragma: no cover - torchvision is a dependency of open_clip
            return
        steps = list(getattr(preprocess, "transforms", []) or [])
        cut = [i for i, t in enumerate(steps) if isinstance(t, ToTensor)]
        if len(cut) == 1 and all(isinstance(t, Normalize) for t in steps[cut[0] + 1 :]):
            self.pil_stage = Compose(steps[: cut[0]])
            self.tensor_stage = steps[cut[0] + 1 :]

    def item(self, path: str | os.PathLike) -> tuple[Any, str | None]:
        """(prepared image, None) or (None, "ErrorType: message"); never raises."""
        try:
            im = open_image(path)
            if self.pil_stage is None:
                return self.preprocess(im), None
            im = self.pil_stage(im)
            arr = np.asarray(im)
            if im.mode != "RGB" or arr.dtype != np.uint8 or arr.ndim != 3:
                return self.preprocess(open_image(path)), None  # unusual output: the whole transform
            return arr, None
        except Exception as e:  # noqa: BLE001 - any decode failure is a per-image result
            return None, f"{type(e).__name__}: {e}"

    def batch(self, items: list, device: str, dtype) -> Any:
        import torch

        if all(isinstance(x, np.ndarray) for x in items):
            x = torch.from_numpy(np.stack(items)).to(device, non_blocking=True)
            x = x.permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)
            for t in self.tensor_stage:
                x = t(x)
        elif not any(isinstance(x, np.ndarray) for x in items):
            x = torch.stack(items).to(device, non_blocking=True)
        else:  # mixed: finish each array the way ToTensor + Normalize would
            parts = [self.batch([a], device, dtype)[0] if isinstance(a, np.ndarray) else a.to(device) for a in items]
            x = torch.stack(parts)
        return x.to(dtype)


class _ImageDataset:
    """Map-style dataset for the DataLoader path (module level so worker processes can use it)."""

    def __init__(self, paths: Sequence[str], prep: ImagePrep) -> None:
        self.paths = list(paths)
        self.prep = prep

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, str | None]:
        return self.prep.item(self.paths[i])


def _collate_keep(items: list) -> list:
    return items


def _is_url_cached(url: str, cache_dir: str | None) -> str | None:
    target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
    return target if os.path.isfile(target) else None


def cached_checkpoint_for_tag(arch: str, tag: str, cache_dir: str | None = None) -> str | None:
    """Local file open_clip would load for (arch, tag), if already downloaded; never downloads.

    Mirrors open_clip.pretrained.download_pretrained: an explicit 'file', else the HF hub entry
    (preferred when huggingface_hub is installed), else the URL cache (~/.cache/clip).
    """
    import open_clip
    from open_clip import pretrained as oc_pretrained

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    hf_entry = cfg.get("hf_hub", "")
    if hf_entry and oc_pretrained.has_hf_hub():
        model_id, filename = os.path.split(hf_entry)
        try:
            with hub_offline():
                return oc_pretrained.download_pretrained_from_hf(
                    model_id, filename=filename or None, cache_dir=cache_dir
                )
        except Exception:
            return None
    if cfg.get("url"):
        return _is_url_cached(cfg["url"], cache_dir)
    return None


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
        # decode workers; default 2 on small machines (measured on 2 cores: 2 beat 1 by ~5-10%,
        # as one worker gets too small a share next to torch's threads), up to 8 for GPU hosts
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

    @contextlib.contextmanager
    def _torch_threads(self) -> Iterator[None]:
        import torch

        n = self.torch_threads
        if not n or n == torch.get_num_threads():
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(int(n))
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _model_dtype(self):
        return next(self.model.parameters()).dtype

    # -- images ------------------------------------------------------------------------------
    def _batches_threads(self, paths: list[str], prep: ImagePrep) -> Iterator[tuple[int, list[tuple[Any, str | None]]]]:
        bs = self.batch_size
        starts = list(range(0, len(paths), bs))
        if self.num_workers == 0:  # synchronous: no overlap (reference / debugging)
            for s in starts:
                yield s, [prep.item(p) for p in paths[s : s + bs]]
            return
        with ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="clip-decode") as pool:
            window: deque[tuple[int, list[Future]]] = deque()
            todo = iter(starts)

            def submit_next() -> None:
                s = next(todo, None)
                if s is not None:
                    window.append((s, [pool.submit(prep.item, p) for p in paths[s : s + bs]]))

            for _ in range(2):  # current batch + the next one decoding while the model runs
                submit_next()
            while window:
                s, futures = window.popleft()
                results = [f.result() for f in futures]
                submit_next()
                yield s, results

    def _batches_dataloader(self, paths: list[str], prep: ImagePrep) -> Iterator[tuple[int, list[tuple[Any, str | None]]]]:
        from torch.utils.data import DataLoader

        dl = DataLoader(
            _ImageDataset(paths, prep),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_collate_keep,
            prefetch_factor=2 if self.num_workers > 0 else None,
        )
        s = 0
        for items in dl:
            yield s, items
            s += len(items)

    def encode_images(self, paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray, list[str | None]]:
        """Embed image files: (float32 [N, dim] L2-normalised, per-image error or None).

        A file that cannot be decoded gives a row of NaN and its error string.
        """
        import torch

        self._ensure_loaded()
        names = [str(p) for p in paths]
        dim = self.dim
        out = np.full((len(names), dim), np.nan, dtype=np.float32)
        errors: list[str | None] = [None] * len(names)
        if not names:
            return out, errors
        batches = self._batches_threads if self.loader == "threads" else self._batches_dataloader
        dtype = self._model_dtype()
        prep = self.image_prep
        with self._torch_threads(), torch.inference_mode():
            for start, items in batches(names, prep):
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
        with self._torch_threads(), torch.inference_mode():
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

"""Per-image decoding and preprocessing for CLIP, split so the heavy part runs in decode workers.

An image that cannot be read is a per-image result (None, error string); it never raises.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class Openable(Protocol):
    """An image to open later, e.g. ..metadata.image_store.ImageRef (a file or a shard member)."""

    def open(self) -> Any: ...


ImageSource = str | os.PathLike | Openable

# Modes open_clip's preprocess handles as the reference loop does (resize, then convert to RGB).
# Others (palette, bilevel, CMYK, 16/32-bit) go to RGB first: PIL resizes palette images with
# nearest neighbour, and high-bit modes would be clipped after resampling.
_RESIZE_AS_IS = {"RGB", "RGBA", "L", "LA"}


def open_image(source: ImageSource):
    """Decode an image fully (truncated/corrupt files raise here, not later): a file path, or
    anything with `open()` giving a binary file (an image key, opened through image_store)."""
    from PIL import Image

    if isinstance(source, (str, os.PathLike)):
        with Image.open(source) as im:
            im.load()
    else:
        with source.open() as f, Image.open(f) as im:
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

    def item(self, path: ImageSource) -> tuple[Any, str | None]:
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

"""Open each image once, safely: refuse paths that escape the dataset, decode fully, read its size.
Files and shard members alike, through image_store."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
from PIL import Image, UnidentifiedImageError

from .image_store import ImageNotFound, open_image_file
from .paths import UnsafePath

PIL_DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold

PROBE_SCHEMA = {
    "image_key": pl.String,
    "file_width": pl.Int64,
    "file_height": pl.Int64,
    "image_mode": pl.String,
    "image_reason": pl.String,
    "image_detail": pl.String,
}


def probe_image(images_dir: Path, key: str, max_pixels: int = PIL_DEFAULT_MAX_PIXELS) -> dict:
    row: dict[str, Any] = {"image_key": key}
    try:
        f = open_image_file(images_dir, key)
    except UnsafePath as e:
        return {**row, "image_reason": "unsafe_path", "image_detail": str(e)}
    except ImageNotFound as e:
        return {**row, "image_reason": "image_missing", "image_detail": str(e)[:300]}
    except OSError as e:  # a shard that cannot be read (truncated tar, bad Parquet)
        return {**row, "image_reason": "image_unreadable", "image_detail": f"{type(e).__name__}: {e}"[:300]}
    try:
        with warnings.catch_warnings(), f:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f) as im:
                width, height = im.size
                row.update(file_width=width, file_height=height, image_mode=im.mode)
                if width * height > max_pixels:  # checked before decoding a single pixel
                    return {**row, "image_reason": "image_too_large",
                            "image_detail": f"{width}x{height} exceeds {max_pixels} pixels"}
                im.draft("RGB", (max(1, width // 8), max(1, height // 8)))  # fast JPEG decode
                im.load()  # reads the whole stream: truncated or corrupt files fail here
    except Image.DecompressionBombError as e:  # Pillow refuses to even open it: far over the limit
        return {**row, "image_reason": "image_too_large", "image_detail": str(e)[:300]}
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return {**row, "image_reason": "image_unreadable", "image_detail": f"{type(e).__name__}: {e}"[:300]}
    return row


def probe_images(images_dir: Path, keys: list[str], max_pixels: int = PIL_DEFAULT_MAX_PIXELS,
                 workers: int = 4) -> pl.DataFrame:
    """Probe many images; Pillow releases the GIL while decoding, so threads overlap the I/O."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda k: probe_image(images_dir, k, max_pixels), keys))
    return pl.DataFrame(rows, schema=PROBE_SCHEMA, strict=False) if rows else pl.DataFrame(schema=PROBE_SCHEMA)

"""Build the `huge_caption` bad-input case at test time.

A 10 MB caption is too big to keep in the repository, so this script writes the case into a
directory of the caller's choosing (normally a pytest tmp_path):

    from tests.data.bad.huge_caption.generate import generate   # or load it by file path
    dataset_dir = generate(tmp_path / "huge_caption")

or from a shell: `python tests/data/bad/huge_caption/generate.py OUT_DIR`.

The result is a normal dataset folder: `dataset.yaml`, `images/cat.jpg` (copied from this
folder) and `annotations/captions.json` with two captions for the image: one of about
10 MB (expected reject: text_too_long) and one ordinary caption that should be accepted.
Only the standard library is used.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CAPTION_BYTES = 10 * 1024 * 1024
GOOD_CAPTION = "A close-up of a tabby cat's face with yellowish green eyes."


def huge_caption(n_bytes: int = CAPTION_BYTES) -> str:
    """An ASCII caption of exactly n_bytes made of repeated words."""
    unit = "a very long caption about a cat "
    text = unit * (n_bytes // len(unit) + 1)
    return text[:n_bytes].rstrip() + "."


def generate(out_dir: str | Path, n_bytes: int = CAPTION_BYTES) -> Path:
    """Write the case into out_dir (created if needed) and return it."""
    out = Path(out_dir)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "dataset.yaml", out / "dataset.yaml")
    shutil.copytree(HERE / "images", out / "images", dirs_exist_ok=True)
    doc = {
        "images": [{"id": 1, "file_name": "cat.jpg", "width": 120, "height": 120}],
        "annotations": [
            {"id": 1, "image_id": 1, "caption": huge_caption(n_bytes)},
            {"id": 2, "image_id": 1, "caption": GOOD_CAPTION},
        ],
    }
    with open(out / "annotations" / "captions.json", "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT_DIR")
    print(generate(sys.argv[1]))

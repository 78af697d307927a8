"""Localized Narratives loader (format `localized_narratives`): a Localized Narratives JSONL file,
`<dataset>_<split>_localized_narratives[-NNNNN-of-NNNNN].jsonl` (full) or `<dataset>_<split>_captions.jsonl`
(captions only), for COCO, Open Images, Flickr30k and ADE20k.

One JSON object per line, one narrative of one annotator about one image:

    {"dataset_id": "mscoco_val2017", "image_id": "137576", "annotator_id": 93,
     "caption": "In this image there are group of cows standing and eating th...",
     "timed_caption": [{"utterance", "start_time", "end_time"}, ...],
     "traces": [[{"x", "y", "t"}, ...], ...], "voice_recording": "coco_val/coco_val_137576_93.ogg"}

Rows (see ..records):
  * one "image" row per distinct image, `<source>#image/<image_key>` (no size in the file: null);
  * one "caption" row per line, `<source>#caption/<line number>` (an image has narratives by
    several annotators and there is no narrative id; line numbers are 1-based and count blank
    lines): text = caption. The mouse traces, the timed utterances and the voice recording are
    skipped (no record field; a trace is not a box).

Image keys, per dataset_id (matched case-insensitively on its prefix), each the path the dataset's
official image download unpacks to, so `images:` in dataset.yaml names the folder holding them:
  * coco / mscoco_<split>2017: `<split>2017/<image_id as 12 digits>.jpg` (train2017/, val2017/ zips;
    any other COCO naming on disk is found too and other datasets' records of the picture merged:
    ../coco_images.py);
  * open_images_*: `<split>/<image_id>.jpg`, split train / validation / test from the dataset_id
    (the Open Images downloader's folders);
  * flickr30k* / flick30k*: `flickr30k-images/<image_id>.jpg` (the official archive's folder);
  * ade20k*: `images/training/<image_id>.jpg` or `images/validation/...` by the id's ADE_train_ /
    ADE_val_ prefix (ADEChallengeData2016's folders).
Another dataset_id has no known image layout: invalid_record.

Rejects: a line that is not JSON is one `<source>#line/<n>` malformed_file row, a line that is not
an object one `<source>#line/<n>` invalid_record row (the rest of the file still loads); a caption
row is invalid_record when the caption is missing, empty or not a string, the dataset_id is
missing or unknown, or the image_id is missing or not a plain file name (a number is taken as its
digits; COCO ids must be digits). An empty file or one that is not UTF-8 is one `<source>#file`
malformed_file row.

Detection: 2 for a `.jsonl` file whose first line is an object with "dataset_id", "image_id",
"annotator_id" and "caption" (Localized Narratives only), beating the `records` loader's 1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from ..records import CAPTION, IMAGE, to_source_records
from .common import BadFile, file_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .vqa import json_type
from .vsr import json_objects, read_lines

FORMAT = "localized_narratives"
_DETAIL_MAX = 300
_SIGNATURE_KEYS = {"dataset_id", "image_id", "annotator_id", "caption"}
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


def detect(path: Path, head: bytes) -> int:
    """2 for a Localized Narratives JSONL file (module docstring), else 0."""
    if path.suffix != ".jsonl":
        return NO
    text = head[3:] if head[:3] == b"\xef\xbb\xbf" else head
    first = next((line for line in text.split(b"\n") if line.strip()), b"")
    try:
        obj = json.loads(first.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return NO
    return SIGNATURE if isinstance(obj, dict) and _SIGNATURE_KEYS <= obj.keys() else NO


def image_key(dataset_id: str, image_id: str) -> str | None:
    """The image's path under the dataset's image folder (module docstring), None when unknown."""
    ds = dataset_id.lower()
    if ds.startswith(("mscoco", "coco")):
        if not image_id.isdigit():
            return None
        return f"{'val' if 'val' in ds else 'train'}2017/{int(image_id):012d}.jpg"
    if ds.startswith("open_images"):
        split = "validation" if "val" in ds else "test" if "test" in ds else "train"
        return f"{split}/{image_id}.jpg"
    if ds.startswith("flick"):  # flickr30k, and the "Flick30k" spelling
        return f"flickr30k-images/{image_id}.jpg"
    if ds.startswith("ade"):
        return f"images/{'validation' if image_id.startswith('ADE_val') else 'training'}/{image_id}.jpg"
    return None


def _key(obj: dict) -> tuple[str | None, str | None]:
    """(image key, None) or (None, the problem)."""
    ds, img = obj.get("dataset_id"), obj.get("image_id")
    if type(img) is int and img >= 0:
        img = str(img)
    if not nonempty_str(ds):
        return None, "dataset_id is missing" if ds is None else f"dataset_id {str(ds)[:40]!r} is not a non-empty string"
    if img is None:
        return None, "image_id is missing"
    if not isinstance(img, str) or not _SAFE_ID.match(img):
        return None, f"image_id {str(img)[:80]!r} is not a plain file name"
    key = image_key(ds, img)
    return (key, None) if key else (None, f"dataset_id {ds[:60]!r} (image_id {img[:40]!r}) has no known image layout")


def load_localized_narratives(path: Path, source: str) -> pl.DataFrame:
    """A Localized Narratives JSONL file -> source records (module docstring). Bad data never
    raises; only an unreadable path (OSError) does."""
    base = {"source": source, "source_format": FORMAT}
    try:
        lines = read_lines(Path(path))
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    rows: list[dict] = []
    images: set[str] = set()
    for n, obj in json_objects(lines, base, rows):
        key, problem = _key(obj)
        caption = obj.get("caption")
        if key is not None and key not in images:
            images.add(key)
            rows.append({**base, "record_id": f"{source}#image/{key}", "kind": IMAGE, "image_key": key})
        row = {**base, "record_id": f"{source}#caption/{n}", "kind": CAPTION, "image_key": key,
               "text": caption.strip() if nonempty_str(caption) else None}
        if problem is None and row["text"] is None:
            problem = "caption is missing or empty" if caption is None or isinstance(caption, str) \
                else f"caption is {json_type(caption)}, not a string"
        if problem:
            row["reject_reason"], row["reject_detail"] = "invalid_record", problem[:_DETAIL_MAX]
        rows.append(row)
    return to_source_records(rows)


LOADER = Loader(FORMAT, load_localized_narratives, detect, description="Localized Narratives JSONL: captions",
                suffixes=(".jsonl",))

"""TextCaps loader (format `textcaps`): a TextCaps captions file, read with TextVQA's Rosetta OCR file.

The official download, per split (train, val, test):

    TextCaps_0.1_<split>.json   {"dataset_type", "dataset_name": "textcaps", "dataset_version",
                                 "data": [{"image_id", "image_classes", "flickr_original_url",
                                 "flickr_300k_url", "image_width", "image_height", "set_name",
                                 "image_name", "image_path", "caption_id", "caption_str",
                                 "caption_tokens", "reference_strs", "reference_tokens"}]}
                                (one entry per caption; test: one entry per image, no caption fields)

TextCaps shares TextVQA's images (train and val in `train_images/`, test in `test_images/`, as
TextVQA's zips unpack; `image_path` says `train/<id>.jpg`, which is not how they unpack, so it is
not used) and TextVQA's Rosetta OCR: the companion is `TextVQA_Rosetta_OCR_v0.2_<split>.json` in
the same folder (another `v*` when v0.2 is absent), found and read by textvqa.py's OCR logic
(imported, not copied): put the OCR file beside the captions file.

Rows (see ..records), entries in file order:
  * one "image" row per distinct image_id, `<source>#image/<image_id>`, width/height from
    image_width / image_height (first entry of the image), image_key `train_images/<image_id>.jpg`
    (`test_images/` for the test split: from the entry's `set_name`, else the file's
    `dataset_type`, else its name), as textvqa.py does;
  * one "caption" row per entry, `<source>#caption/<caption_id>`, text = caption_str.
    `reference_strs` (every caption of the entry's image, repeated in each of its entries) adds no
    rows: those captions are entries of their own. Test entries have no caption: invalid_record
    ("no caption"), id `<source>#caption/@<index>` when caption_id is absent;
  * one "ocr" row per Rosetta token of the split's OCR file, exactly as the textvqa loader makes
    them (`<source>#ocr/<image_id>/<n>`, box as fractions of the image): a token of an image no
    caption entry names is unknown_image_id. No OCR file adds no rows; an unreadable one is one row
    `<source>#ocr/file`.
So rows == entries + distinct valid image ids + OCR tokens (+ one row per unusable OCR entry).

Rejects: invalid_record (entry not an object; caption_id not an integer; image_id not a plain
file name; caption_str missing or empty) > duplicate_record_id (caption_id seen before:
`<caption_id>@<index>`). A whole unreadable file is one `<source>#file` row (malformed_file,
unknown_format when it has no "data" list).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from ..records import CAPTION, IMAGE, to_source_records
from . import textvqa
from .common import BadFile, as_size, file_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .vqa import read_list, typed_fields

FORMAT = "textcaps"
_DETAIL_MAX = 300
_NAME = re.compile(r"^TextCaps_(?P<version>\d[\w.]*)_(?P<split>[A-Za-z]+)\.json$")
_DATA_LIST = re.compile(rb'"data"\s*:\s*\[')
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class _Doc(msgspec.Struct):
    data: list[dict[str, Any]]  # entries stay dicts: checked one by one (typed_fields)
    dataset_type: str | None = None


_DOC = msgspec.json.Decoder(_Doc)
_SPEC = {"image_id": str, "caption_id": int, "caption_str": str, "set_name": str}


def _split(path: Path, dataset_type: object = None) -> str | None:
    m = _NAME.match(path.name)
    return m["split"] if m else dataset_type if isinstance(dataset_type, str) and dataset_type.isalpha() else None


def ocr_path(captions: Path, split: str | None = None) -> Path | None:
    """TextVQA's Rosetta OCR file of the captions file's split (`split`, else the one its name
    says), beside it (may not exist); None when the split is unknown."""
    split = split or _split(captions)
    return textvqa.split_ocr_path(captions.parent, split) if split else None


def companions(path: Path) -> list[Path]:
    ocr = ocr_path(Path(path))
    return [ocr] if ocr is not None else []


def detect(path: Path, head: bytes) -> int:
    """2 for a TextCaps captions file, else 0 (its OCR file is TextVQA's, claimed by textvqa)."""
    text = head[3:] if head[:3] == b"\xef\xbb\xbf" else head
    if path.suffix != ".json" or text.lstrip()[:1] != b"{" or not _DATA_LIST.search(text):
        return NO
    if re.search(rb'"dataset_name"\s*:\s*"textcaps"', text):
        return SIGNATURE
    if b'"caption_str"' in text and b'"image_id"' in text:
        return SIGNATURE
    return NO


def load_textcaps(path: Path, source: str) -> pl.DataFrame:
    """A TextCaps captions file (+ the split's Rosetta OCR file) -> source records (module
    docstring). Bad data never raises; only an unreadable path (OSError) does."""
    path = Path(path)
    base = {"source": source, "source_format": FORMAT}
    try:
        entries, top = read_list(path, "data", _DOC, ("dataset_type",), what="TextCaps")
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    split = _split(path, top.get("dataset_type"))

    rows: list[dict] = []
    images: dict[str, str] = {}
    first: dict[int, int] = {}
    for i, entry in enumerate(entries):
        f, note = typed_fields(entry, _SPEC)
        cid, img, text = f["caption_id"], f["image_id"], f["caption_str"]
        safe_img = img if img is not None and _SAFE_ID.match(img) else None
        key = textvqa.image_key(safe_img, f["set_name"] or split) if safe_img else None
        if key is not None and safe_img is not None and safe_img not in images:  # (key: safe_img is set)
            images[safe_img] = key
            rows.append({**base, "record_id": f"{source}#image/{safe_img}", "kind": IMAGE, "image_key": key,
                         "width": as_size(entry.get("image_width")),  # entry is a dict: image_id was read
                         "height": as_size(entry.get("image_height"))})
        native = f"@{i}" if cid is None else f"{cid}@{i}" if cid in first else str(cid)
        row = {**base, "record_id": f"{source}#caption/{native}", "kind": CAPTION, "image_key": key,
               "text": text.strip() if nonempty_str(text) else None}
        reason = "invalid_record"
        if note:
            problem = note
        elif img is None:
            problem = "image_id is missing"
        elif safe_img is None:
            problem = f"image_id {img[:80]!r} is not a plain file name"
        elif cid is None and text is None and ((f["set_name"] or split) == "test"):
            problem = "no caption: the test split publishes images only"
        elif cid is None:
            problem = "caption_id is missing"
        elif cid in first:
            reason, problem = "duplicate_record_id", f"caption_id {cid} repeats data[{first[cid]}]"
        elif row["text"] is None:
            problem = "caption_str is missing or empty"
        else:
            problem = None
        if problem:
            row["reject_reason"], row["reject_detail"] = reason, problem[:_DETAIL_MAX]
        if cid is not None:
            first.setdefault(cid, i)
        rows.append(row)
    rows += textvqa.ocr_rows(ocr_path(path, split), source, base, images, named_by="caption entry")
    return to_source_records(rows)


LOADER = Loader(FORMAT, load_textcaps, detect, companions, description="TextCaps captions JSON + TextVQA Rosetta OCR")

"""Stanford image paragraphs loader (format `image_paragraphs`): `paragraphs_v1.json` (Krause et al. 2017).

The release is one folder:

    paragraphs_v1.json   [{"url": "https://.../VG_100K_2/2388203.jpg", "image_id": 2388203, "paragraph": "..."}]
    train_split.json     [image_id, ...]      (likewise val_split.json, test_split.json)

The images are Visual Genome's: the key is the url's last two path parts (`VG_100K/1.jpg`,
`VG_100K_2/5.jpg`), as `visual_genome.image_key_from_url` takes it, so `images:` in dataset.yaml
names the folder the VG image zips unpack into (the one holding `VG_100K/` and `VG_100K_2/`).

Rows (see ..records):
  * one "image" row per distinct image_id, `<source>#image/<image_id>`, image_key from the url (the
    file gives no size: width/height stay null);
  * one "caption" row per entry, `<source>#caption/<image_id>`: a paragraph is several sentences
    describing the whole image, a statement about it, so it is a caption-kind record (whitespace and
    line breaks collapsed to single spaces; it is not split into sentences). A paragraph has no id of its
    own, so the caption id is its image's; a second paragraph of an image is `<image_id>@<index>` and is
    kept (another caption of the image: grouping drops it if it repeats the first).
So rows == entries + distinct usable image ids.

Rejects (caption rows, first that applies): invalid_record (entry not an object: `#caption/@<index>`;
image_id not an integer: `#caption/@<index>`; url missing or not a string; paragraph missing, empty or
not a string; a url giving another key than the image's first entry) > unsafe_path (the url's key
leaves the image folder). An entry whose image_id and url are usable gives the image row even when its
paragraph is rejected. A file that is not a JSON list is one `<source>#file` row (unknown_format or
malformed_file); an empty list gives no rows.

The split files are companions of the paragraphs file: they list image ids only, so they hold no
record of their own, and source records have no split field, so the loader does not need their
contents. Being companions they count in the dataset version and are never loaded on their own (no
unknown_format rows for them). A split file present without its paragraphs file is detected (by
name and a list of integers) and loads as one `missing_companion` row `<source>#file`, so it is still
accounted for.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..records import CAPTION, IMAGE, to_source_records
from .common import BadFile, file_reject, image_key_or_reject, nonempty_str, read_json
from .registry import NO, SIGNATURE, Loader
from .visual_genome import image_key_from_url
from .vqa import json_type

FORMAT = "image_paragraphs"
PARAGRAPHS = "paragraphs_v1.json"
SPLIT_FILES = ("train_split.json", "val_split.json", "test_split.json")
_DETAIL_MAX = 300
_FIRST_ENTRY = re.compile(rb'^\s*\[\s*\{')
_INT_LIST = re.compile(rb'^\s*\[\s*(\]|-?\d)')


def _text(head: bytes) -> bytes:
    return head[3:] if head[:3] == b"\xef\xbb\xbf" else head


def detect(path: Path, head: bytes) -> int:
    """2 for a paragraphs file (a list of objects with "paragraph" and "image_id") or a split file
    (by name, a list of integers), else 0."""
    text = _text(head)
    if path.suffix != ".json":
        return NO
    if _FIRST_ENTRY.match(text) and re.search(rb'"paragraph"\s*:', text) and re.search(rb'"image_id"\s*:', text):
        return SIGNATURE
    if path.name in SPLIT_FILES and _INT_LIST.match(text):
        return SIGNATURE
    return NO


def companions(path: Path) -> list[Path]:
    """The split files beside a paragraphs file (none for a split file itself)."""
    path = Path(path)
    return [] if path.name in SPLIT_FILES else [path.with_name(n) for n in SPLIT_FILES]


def _reject(row: dict, reason: str, detail: str) -> dict:
    if not row.get("reject_reason"):
        row["reject_reason"], row["reject_detail"] = reason, detail[:_DETAIL_MAX]
    return row


def load_image_paragraphs(path: Path, source: str) -> pl.DataFrame:
    """paragraphs_v1.json -> source records (module docstring). Bad data never raises."""
    path = Path(path)
    base = {"source": source, "source_format": FORMAT}
    try:
        data = read_json(path)
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    if path.name in SPLIT_FILES and isinstance(data, list) and all(type(v) is int for v in data):
        where = ("is beside it: a split file is its companion, not loaded on its own"
                 if path.with_name(PARAGRAPHS).is_file() else "is not beside it")
        return to_source_records([file_reject(source, FORMAT, BadFile(
            "missing_companion", f"a split file lists image ids of {PARAGRAPHS}, which {where}"))])
    if not isinstance(data, list):
        return to_source_records([file_reject(source, FORMAT, BadFile(
            "unknown_format", f"top-level JSON value is {json_type(data)}, not a list of paragraphs"))])

    images: list[dict] = []
    captions: list[dict] = []
    keys: dict[int, str] = {}  # image_id -> its key (first usable entry)
    seen: set[int] = set()  # image ids with a caption row
    for i, entry in enumerate(data):
        row = {**base, "kind": CAPTION, "record_id": f"{source}#caption/@{i}"}
        if not isinstance(entry, dict):
            captions.append(_reject(row, "invalid_record", f"entry is {json_type(entry)}, not an object"))
            continue
        img, url, paragraph = entry.get("image_id"), entry.get("url"), entry.get("paragraph")
        if type(img) is not int:
            captions.append(_reject(row, "invalid_record", f"image_id is {json_type(img)}, not an integer"))
            continue
        row["record_id"] = f"{source}#caption/{img}" if img not in seen else f"{source}#caption/{img}@{i}"
        seen.add(img)
        if nonempty_str(paragraph):
            row["text"] = " ".join(paragraph.split())
        if not nonempty_str(url):
            _reject(row, "invalid_record", f"url is {json_type(url) if url is not None else 'missing'}, "
                    "not a non-empty string")
        else:
            image_key_or_reject(image_key_from_url(url), row)
            key = row.get("image_key")
            if key is not None and img in keys and keys[img] != key:
                _reject(row, "invalid_record", f"url gives {key!r}, but image {img} is {keys[img]!r}")
                row["image_key"] = keys[img]
            elif key is not None and img not in keys:
                keys[img] = key
                images.append({**base, "kind": IMAGE, "record_id": f"{source}#image/{img}", "image_key": key})
        if row.get("text") is None:
            what = "missing" if paragraph is None else json_type(paragraph) if not isinstance(paragraph, str) else "empty"
            _reject(row, "invalid_record", f"paragraph is {what}, not a non-empty string")
        captions.append(row)
    return to_source_records(images + captions)


LOADER = Loader(FORMAT, load_image_paragraphs, detect, companions,
                description="Stanford image paragraphs (paragraphs_v1.json, Visual Genome images)")

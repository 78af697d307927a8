"""LLaVAR loader (format `llavar`): the LAION metadata of LLaVAR's text-rich images, with their OCR.

LLaVAR (Zhang et al. 2023) released, beside its LLaVA-format conversations (which the `llava`
loader reads), the metadata of the LAION images it used and the OCR results it generated the
conversations from. The layout this loader reads is the one Instructify's public code reads
(shared/docs/reference.md; the field names below are from there):

    finetune_meta.json            [{"llavar_id": "<image file name>", "TEXT": "<LAION alt text>",
                                    "WIDTH": 800, "HEIGHT": 600, ...}, ...]   (likewise pretrain_meta.json)
    llavar_ocr_results.jsonl      {"llavar_id": "...", "ocr_results": [[text, x1, y1, x2, y2], ...]} per line

Unconfirmed (no format document): `llavar_id` is taken as the image's file name inside the folder
`images:` names (the reference keeps them in `llavar_images/`); OCR corners are fractions of the
image when all four lie in [0, 1] (bbox_norm true), else pixels.

Rows (see ..records), per meta file:
  * one "image" row per distinct llavar_id, `<source>#image/<llavar_id>`, size from WIDTH / HEIGHT;
  * one "caption" row per entry with a non-empty TEXT (the LAION alt text), `<source>#caption/<llavar_id>`;
  * one "ocr" row per OCR result of an image of this file, `<source>#ocr/<llavar_id>/<n>`, its text and box.
Rejects: an entry that is not an object, or whose llavar_id is not a non-empty string: invalid_record
(`#image/@<index>`); a second entry of an id: duplicate_record_id; an id leaving the image folder:
unsafe_path. OCR: a line that is not JSON or not {llavar_id, ocr_results: [...]}: invalid_record
(`#ocr/@<line>`); a result that is not [non-empty text, 4 numbers]: invalid_record; a result of an
image no meta file lists: unknown_image_id (reported by the first meta file present, finetune before
pretrain; the OCR of the other file's images is that file's). The OCR file is a companion: absent,
the images and captions stand alone; unreadable, it is one `<source>#ocr/file` row.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import polars as pl

from ..records import CAPTION, IMAGE, INVALID, OCR, to_source_records
from .common import BadFile, as_size, file_reject, image_key_or_reject, nonempty_str, read_json
from .registry import NO, SIGNATURE, Loader
from .vqa import json_type

FORMAT = "llavar"
META_FILES = ("finetune_meta.json", "pretrain_meta.json")
OCR_FILE = "llavar_ocr_results.jsonl"
_DETAIL_MAX = 300
_HAS_ID = re.compile(rb'"llavar_id"\s*:')


def detect(path: Path, head: bytes) -> int:
    """2 for a meta file (by name, or a JSON list naming llavar_id) or the OCR file (by name + content)."""
    if path.name == OCR_FILE and _HAS_ID.search(head):
        return SIGNATURE
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if path.suffix == ".json" and text.startswith(b"[") and _HAS_ID.search(head):
        return SIGNATURE
    return NO


def companions(path: Path) -> list[Path]:
    """The OCR file beside a meta file."""
    return [] if Path(path).name == OCR_FILE else [Path(path).with_name(OCR_FILE)]


def _reject(row: dict, reason: str, detail: str) -> dict:
    if not row.get("reject_reason"):
        row["reject_reason"], row["reject_detail"] = reason, detail[:_DETAIL_MAX]
    return row


def _image_rows(data: list, base: dict, source: str) -> tuple[list[dict], dict[str, str]]:
    """(image + caption rows, llavar_id -> image key of the usable images)."""
    rows: list[dict] = []
    keys: dict[str, str] = {}
    for i, entry in enumerate(data):
        lid = entry.get("llavar_id") if isinstance(entry, dict) else None
        if not nonempty_str(lid):
            what = json_type(entry) if not isinstance(entry, dict) else f"llavar_id is {json_type(lid)}"
            rows.append(_reject({**base, "kind": IMAGE, "record_id": f"{source}#image/@{i}"}, "invalid_record",
                                f"entry {i}: {what}, not an object with a non-empty llavar_id"))
            continue
        assert isinstance(entry, dict)
        row = {**base, "kind": IMAGE, "record_id": f"{source}#image/{lid}" + (f"@{i}" if lid in keys else ""),
               "width": as_size(entry.get("WIDTH")), "height": as_size(entry.get("HEIGHT"))}
        if lid in keys:
            rows.append(_reject(row, "duplicate_record_id", f"llavar_id {lid!r} listed again (entry {i})"))
            continue
        image_key_or_reject(lid, row)
        rows.append(row)
        if row.get("image_key") is None:
            continue
        keys[lid] = row["image_key"]
        if nonempty_str(entry.get("TEXT")):
            rows.append({**base, "kind": CAPTION, "record_id": f"{source}#caption/{lid}", "image_key": keys[lid],
                         "text": " ".join(entry["TEXT"].split())})
    return rows, keys


def _ocr_result(row: dict, result: Any) -> dict:
    """Text and box of one [text, x1, y1, x2, y2] result, or the row rejected."""
    ok = (isinstance(result, list) and len(result) == 5 and nonempty_str(result[0])
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in result[1:]))
    if not ok:
        return _reject(row, "invalid_record", f"OCR result {json.dumps(result)[:120]} is not [text, x1, y1, x2, y2]")
    x1, y1, x2, y2 = (float(v) for v in result[1:])
    row.update(text=" ".join(result[0].split()), bbox_x=min(x1, x2), bbox_y=min(y1, y2), bbox_w=abs(x2 - x1),
               bbox_h=abs(y2 - y1), bbox_norm=all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)))
    return row


def _ocr_line(line: str, n: int) -> tuple[Any, str | None]:
    """(the parsed line, None) or (None, what is wrong with it)."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as e:
        return None, f"line {n} is not JSON: {e}"
    if isinstance(entry, dict) and nonempty_str(entry.get("llavar_id")) and isinstance(entry.get("ocr_results"), list):
        return entry, None
    return None, f"line {n} is not {{llavar_id, ocr_results: [...]}}"


def _others(meta: Path) -> tuple[set[str], bool]:
    """(ids the other meta files beside `meta` list, whether `meta` reports OCR of images no meta
    file lists): with both files beside one OCR file, each takes its own images' OCR, and the first
    present in META_FILES order alone reports the rest, so nothing is counted twice."""
    ids: set[str] = set()
    present = [m for m in META_FILES if meta.with_name(m).is_file()]
    for name in present:
        if name != meta.name:
            try:
                data = read_json(meta.with_name(name))
            except BadFile:
                continue  # that file reports itself as malformed
            if isinstance(data, list):
                ids.update(e["llavar_id"] for e in data if isinstance(e, dict) and nonempty_str(e.get("llavar_id")))
    return ids, not present or present[0] == meta.name or meta.name not in META_FILES


def _ocr_rows(meta: Path, keys: dict[str, str], base: dict, source: str) -> list[dict]:
    path = meta.with_name(OCR_FILE)
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        return [{**base, "record_id": f"{source}#ocr/file", "kind": INVALID, "reject_reason": "malformed_file",
                 "reject_detail": f"{OCR_FILE}: {e}"[:_DETAIL_MAX]}]
    others, reports_unknown = _others(meta)
    rows: list[dict] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entry, error = _ocr_line(line, n)
        if error:
            if reports_unknown:  # a bad line is reported once, like an unknown image
                rows.append(_reject({**base, "kind": OCR, "record_id": f"{source}#ocr/@{n}"}, "invalid_record", error))
            continue
        assert isinstance(entry, dict)
        lid = entry["llavar_id"]
        if lid not in keys and (lid in others or not reports_unknown):
            continue  # another meta file's image: that file's rows hold it
        for k, result in enumerate(entry["ocr_results"]):
            row = _ocr_result({**base, "kind": OCR, "record_id": f"{source}#ocr/{lid}/{k}",
                               "image_key": keys.get(lid)}, result)
            if lid not in keys:
                _reject(row, "unknown_image_id", f"llavar_id {lid!r} is not an image of this meta file")
            rows.append(row)
    return rows


def load_llavar(path: Path, source: str) -> pl.DataFrame:
    """A LLaVAR meta file (and its OCR companion) -> source records (module docstring). Bad data never raises."""
    path = Path(path)
    base = {"source": source, "source_format": FORMAT}
    if path.name == OCR_FILE:
        where = "one of which is beside it" if any(path.with_name(m).is_file() for m in META_FILES) else "none is beside it"
        return to_source_records([file_reject(source, FORMAT, BadFile(
            "missing_companion", f"the OCR file belongs to a meta file ({', '.join(META_FILES)}); {where}"))])
    try:
        data = read_json(path)
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    if not isinstance(data, list):
        return to_source_records([file_reject(source, FORMAT, BadFile(
            "unknown_format", f"top-level JSON value is {json_type(data)}, not a list of image entries"))])
    rows, keys = _image_rows(data, base, source)
    return to_source_records(rows + _ocr_rows(path, keys, base, source))


LOADER = Loader(FORMAT, load_llavar, detect, companions,
                description="LLaVAR's LAION image metadata (finetune/pretrain_meta.json) with its OCR results")

"""TextVQA loader (format `textvqa`): a TextVQA questions file, read with its Rosetta OCR file.

The official download, per split (train, val, test):

    TextVQA_0.5.1_<split>.json             {"dataset_type", "dataset_name": "textvqa", "dataset_version",
                                            "data": [{"question", "image_id", "image_classes",
                                            "flickr_original_url", "flickr_300k_url", "image_width",
                                            "image_height", "answers": [10 strings], "question_tokens",
                                            "question_id", "set_name"}]}   (test: no "answers")
    TextVQA_Rosetta_OCR_v0.2_<split>.json  {"data": [{"image_id", "ocr_tokens": [...], "ocr_info":
                                            [{"word", "bounding_box": {"top_left_x", "top_left_y",
                                            "width", "height", ...}}]}]}

The questions file is the source, the OCR file its companion (same folder, found by name; another
`TextVQA_Rosetta_OCR_v*_<split>.json` is taken when v0.2 is absent). Rows (see ..records):
  * one "image" row per distinct image_id, `<source>#image/<image_id>`, width/height from
    image_width / image_height (first question of the image), image_key `<set>_images/<image_id>.jpg`
    (`train_images/` for train and val, `test_images/` for test, from the entry's `set_name`, else the
    file's `dataset_type`, else its name): the official zips unpack to those folders, so `images:`
    in dataset.yaml names the folder holding `train_images/`;
  * one "qa" row per question, `<source>#qa/<question_id>`: text = the question, answer = the most
    common of its answers, ties going to the first in order. Test questions have no answers:
    invalid_record ("no answers");
  * one "ocr" row per OCR token (per `ocr_info` word, with its box as fractions of the image,
    bbox_norm true; `ocr_tokens` when an entry has no `ocr_info`), `<source>#ocr/<image_id>/<n>`.
    Rosetta gives words, not lines, and no reading order to join them by, so a token is a record.
So rows == questions + distinct valid image ids + OCR tokens (+ one row per unusable OCR entry).

Rejects: invalid_record (entry not an object; question_id not an integer, image_id not a plain
file name, question empty, no non-empty answer) > duplicate_record_id (question_id seen before:
`<id>@<index>`). OCR: a token of an image no question names is unknown_image_id; an empty word,
an entry that is not an object or has no image_id is invalid_record; a second entry of one image
is duplicate_record_id (`<image_id>@<index>/<n>`). An absent OCR file adds no rows (OCR is extra
context, the QA stands without it); an unreadable one is one row `<source>#ocr/file`. An OCR file
loaded on its own (its questions file absent) is one `missing_companion` row `<source>#file`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from ..records import IMAGE, INVALID, OCR, QA, to_source_records
from .common import BadFile, as_size, file_reject, most_common, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .vqa import json_type, read_list, typed_fields

FORMAT = "textvqa"
_DETAIL_MAX = 300
_QUESTIONS_NAME = re.compile(r"^TextVQA_(?P<version>\d[\w.]*)_(?P<split>[A-Za-z]+)\.json$")
_OCR_NAME = re.compile(r"^TextVQA_Rosetta_OCR_v[\w.]+_(?P<split>[A-Za-z]+)\.json$")
_DATA_LIST = re.compile(rb'"data"\s*:\s*\[')
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def split_ocr_path(folder: Path, split: str) -> Path:
    """The Rosetta OCR file of a split in `folder` (v0.2, else the newest present; may not exist).
    TextCaps finds its OCR file by this too."""
    default = folder / f"TextVQA_Rosetta_OCR_v0.2_{split}.json"
    if default.is_file():
        return default
    others = sorted(p for p in folder.glob(f"TextVQA_Rosetta_OCR_v*_{split}.json") if p.is_file())
    return others[-1] if others else default


def ocr_path(questions: Path) -> Path | None:
    """The Rosetta OCR file beside a questions file (may not exist); None for a file not named
    like a TextVQA questions file."""
    m = _QUESTIONS_NAME.match(questions.name)
    return split_ocr_path(questions.parent, m["split"]) if m else None


def companions(path: Path) -> list[Path]:
    ocr = ocr_path(Path(path))
    return [ocr] if ocr is not None else []


def detect(path: Path, head: bytes) -> int:
    """2 for a TextVQA questions file or a Rosetta OCR file, else 0."""
    text = head[3:] if head[:3] == b"\xef\xbb\xbf" else head
    if path.suffix != ".json" or text.lstrip()[:1] != b"{" or not _DATA_LIST.search(text):
        return NO
    if re.search(rb'"dataset_name"\s*:\s*"textvqa"', text) and b'"ocr_info"' not in text:
        return SIGNATURE
    if b'"question_tokens"' in text and b'"question_id"' in text:
        return SIGNATURE
    if b'"ocr_info"' in text or (b'"ocr_tokens"' in text and _OCR_NAME.match(path.name)):
        return SIGNATURE
    return NO


# ------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------


class _Question(msgspec.Struct, gc=False):
    question: str
    image_id: str
    question_id: int
    answers: list[str] | None = None
    image_width: int | float | None = None
    image_height: int | float | None = None
    set_name: str | None = None


class _Box(msgspec.Struct, gc=False):
    top_left_x: float | None = None
    top_left_y: float | None = None
    width: float | None = None
    height: float | None = None


class _Word(msgspec.Struct, gc=False):
    word: str
    bounding_box: _Box | None = None


class _OcrEntry(msgspec.Struct, gc=False):
    image_id: str
    ocr_tokens: list[str] | None = None
    ocr_info: list[_Word] | None = None


class _QuestionsDoc(msgspec.Struct):
    data: list[_Question]
    dataset_type: str | None = None


class _OcrDoc(msgspec.Struct):
    data: list[_OcrEntry]


_QUESTIONS = msgspec.json.Decoder(_QuestionsDoc)
_OCR = msgspec.json.Decoder(_OcrDoc)
_Q_SPEC = {"question": str, "image_id": str, "question_id": int, "answers": list, "set_name": str}


def _attr(entry: Any, name: str) -> Any:
    return getattr(entry, name, None) if isinstance(entry, msgspec.Struct) else entry.get(name)


def image_key(image_id: str, split: str | None) -> str:
    return f"{'test' if split == 'test' else 'train'}_images/{image_id}.jpg"


def _ocr_words(entry: Any) -> list[tuple[str | None, tuple[float, ...] | None]]:
    """(word, (x, y, w, h) or None) per token: `ocr_info` when present, else `ocr_tokens`."""
    info = _attr(entry, "ocr_info")
    if isinstance(info, list):
        out = []
        for w in info:
            word = _attr(w, "word") if isinstance(w, (dict, msgspec.Struct)) else None
            box = _attr(w, "bounding_box") if isinstance(w, (dict, msgspec.Struct)) else None
            xywh = None
            if isinstance(box, (dict, msgspec.Struct)):
                vals = tuple(_attr(box, k) for k in ("top_left_x", "top_left_y", "width", "height"))
                if all(type(v) in (int, float) for v in vals):
                    xywh = tuple(float(v) for v in vals)
            out.append((word if isinstance(word, str) else None, xywh))
        return out
    tokens = _attr(entry, "ocr_tokens")
    return [(t if isinstance(t, str) else None, None) for t in tokens] if isinstance(tokens, list) else []


def ocr_rows(ocr: Path | None, source: str, base: dict, images: dict[str, str],
             named_by: str = "question") -> list[dict]:
    """One row per token of the Rosetta OCR file `ocr` (module docstring), for a source whose
    images are `images` ({image_id: image_key}); `named_by` says what names an image in that
    source (the unknown_image_id detail). No rows when `ocr` is None or absent."""
    if ocr is None or not ocr.is_file():
        return []
    try:
        entries, _ = read_list(ocr, "data", _OCR, what="Rosetta OCR")
    except BadFile as e:
        return [{**base, "record_id": f"{source}#ocr/file", "kind": INVALID, "reject_reason": e.reason,
                 "reject_detail": f"OCR file {ocr.name}: {e.detail}"[:_DETAIL_MAX]}]
    rows: list[dict] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, (dict, msgspec.Struct)) or not isinstance(_attr(entry, "image_id"), str):
            what = json_type(entry) if not isinstance(entry, (dict, msgspec.Struct)) else "an object without an image_id"
            rows.append({**base, "record_id": f"{source}#ocr/@{i}", "kind": INVALID, "reject_reason": "invalid_record",
                         "reject_detail": f"{ocr.name} data[{i}] is {what}"})
            continue
        img = _attr(entry, "image_id")
        prefix = f"{source}#ocr/{img}" if img not in seen else f"{source}#ocr/{img}@{i}"
        for n, (word, xywh) in enumerate(_ocr_words(entry)):
            row = {**base, "record_id": f"{prefix}/{n}", "kind": OCR, "image_key": images.get(img),
                   "text": word.strip() if nonempty_str(word) else None}
            if xywh is not None:
                row.update(bbox_x=xywh[0], bbox_y=xywh[1], bbox_w=xywh[2], bbox_h=xywh[3], bbox_norm=True)
            if img in seen:
                row["reject_reason"], row["reject_detail"] = "duplicate_record_id", f"image {img} repeats data[{seen[img]}]"
            elif img not in images:
                row["reject_reason"], row["reject_detail"] = "unknown_image_id", f"no {named_by} names image {img}"
            elif row["text"] is None:
                row["reject_reason"], row["reject_detail"] = "invalid_record", "OCR word is missing or empty"
            rows.append(row)
        seen.setdefault(img, i)
    return rows


def _is_ocr_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and "question" not in entry and ("ocr_info" in entry or "ocr_tokens" in entry)


def load_textvqa(path: Path, source: str) -> pl.DataFrame:
    """A TextVQA questions file (+ its OCR file) -> source records (module docstring). Bad data
    never raises; only an unreadable path (OSError) does."""
    path = Path(path)
    base = {"source": source, "source_format": FORMAT}
    try:
        questions, top = read_list(path, "data", _QUESTIONS, ("dataset_type",), what="TextVQA")
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    if _OCR_NAME.match(path.name) or (questions and all(_is_ocr_entry(q) for q in questions[:3])):
        return to_source_records([file_reject(source, FORMAT, BadFile(
            "missing_companion", "a Rosetta OCR file is read with its TextVQA questions file "
            "(TextVQA_0.5.1_<split>.json, same folder), which is absent"))])
    m = _QUESTIONS_NAME.match(path.name)
    split = top.get("dataset_type") if isinstance(top.get("dataset_type"), str) else m["split"] if m else None

    rows: list[dict] = []
    images: dict[str, str] = {}
    first: dict[int, int] = {}
    for i, entry in enumerate(questions):
        f, note = typed_fields(entry, _Q_SPEC)
        qid, img, text = f["question_id"], f["image_id"], f["question"]
        safe_img = img if img is not None and _SAFE_ID.match(img) else None
        key = image_key(safe_img, f["set_name"] or split) if safe_img else None
        if key is not None and safe_img is not None and safe_img not in images:  # (key: safe_img is set)
            images[safe_img] = key
            rows.append({**base, "record_id": f"{source}#image/{safe_img}", "kind": IMAGE, "image_key": key,
                         "width": as_size(_attr(entry, "image_width")), "height": as_size(_attr(entry, "image_height"))})
        native = f"@{i}" if qid is None else f"{qid}@{i}" if qid in first else str(qid)
        answer = most_common(f["answers"])
        row = {**base, "record_id": f"{source}#qa/{native}", "kind": QA, "image_key": key,
               "text": text.strip() if nonempty_str(text) else None, "answer": answer}
        if note:
            problem = note
        elif qid is None:
            problem = "question_id is missing"
        elif img is None:
            problem = "image_id is missing"
        elif safe_img is None:
            problem = f"image_id {img[:80]!r} is not a plain file name"
        elif row["text"] is None:
            problem = "question is missing or empty"
        elif qid in first:
            row["reject_reason"], problem = "duplicate_record_id", f"question_id {qid} repeats data[{first[qid]}]"
        elif answer is None:
            problem = f"no answers{': the test split publishes questions only' if split == 'test' else ''}"
        else:
            problem = None
        if problem:
            row["reject_reason"] = row.get("reject_reason") or "invalid_record"
            row["reject_detail"] = problem[:_DETAIL_MAX]
        if qid is not None:
            first.setdefault(qid, i)
        rows.append(row)
    rows += ocr_rows(ocr_path(path), source, base, images)
    return to_source_records(rows)


LOADER = Loader(FORMAT, load_textvqa, detect, companions, description="TextVQA questions JSON + Rosetta OCR")

"""Visual7W loader (format `visual7w`): `dataset_v7w_telling.json` or `dataset_v7w_pointing.json`.

The release (dataset_v7w_telling.zip, dataset_v7w_pointing.zip; images in their own zip) is one JSON
object per task, all splits together:

    {"images": [{"image_id", "filename", "split", "qa_pairs": [{"qa_id", "question", "answer",
                 "multiple_choices": [3 wrong answers], ...}]}],
     "boxes": [{"box_id", "x", "y", "width", "height", ...}]}          (pointing only)

Telling answers are strings; pointing answers and multiple_choices are box ids into "boxes" (the
toolkit's data_provider.py, and code reading the pointing file, use these keys). Not confirmed:
other keys of a QA pair (a question "type") or of a box (a "name"), and the folder the image zip
unpacks to: keys here are `filename` as given, so `images:` in dataset.yaml names the folder that
holds those files. "boxes" are looked up by the QAs, not records of their own.

Rows (see ..records), in file order:
  * one "image" row per image entry, `<source>#image/<image_id>`, image_key = its `filename`, no
    width/height (Visual7W gives none);
  * one "qa" row per QA pair, `<source>#qa/<qa_id>`. As aokvqa does, the multiple-choice form is
    kept, its answer being exact: text = "<question> Options: <o1>, <o2>, <o3>, <o4>." with the
    answer and the three wrong choices in case-insensitive alphabetical order (the release lists
    the answer apart, so a fixed order would give it away), answer = the answer (options and answer
    with whitespace collapsed and a final period dropped: the release ends them with "."). Pointing: each
    option is a box written `[x, y, width, height]` in pixels of the original image, ordered by
    position, the answer the correct box so written. A telling QA whose multiple_choices are not
    a list of non-empty strings keeps the bare question and its answer.
So rows == image entries + QA pairs.

Rejects: an image entry that is not an object, whose image_id is not a non-negative integer or
whose filename is not a plain relative path, or that has no qa_pairs list: invalid_record (its row
`<source>#image/@<index>` when image_id is unusable, and every QA pair of it with the same reason)
> duplicate_record_id (image_id seen before; its QA pairs too). A QA pair: invalid_record (not an
object; qa_id not an integer) > duplicate_record_id (qa_id seen before: `<qa_id>@<image index>.<n>`)
> invalid_record (question empty; answer neither a non-empty string nor a box id; a box id not in
"boxes" or a box without 4 numbers). A
whole unreadable file is one `<source>#file` row: malformed_file, or unknown_format when it has no
"images" list.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from ..records import IMAGE, QA, to_source_records
from .common import BadFile, file_reject, image_key_or_reject, json_bytes, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .vqa import json_type

FORMAT = "visual7w"
_DETAIL_MAX = 300
_NAME = re.compile(r"^dataset_v7w_(?:telling|pointing)\.json$")
_ANY = msgspec.json.Decoder()


def detect(path: Path, head: bytes) -> int:
    """2 for a Visual7W file (a JSON object whose QA pairs carry multiple_choices), else 0."""
    text = head[3:] if head[:3] == b"\xef\xbb\xbf" else head
    if path.suffix != ".json" or text.lstrip()[:1] != b"{":
        return NO
    if b'"qa_pairs"' in text and b'"multiple_choices"' in text:
        return SIGNATURE
    return SIGNATURE if _NAME.match(path.name) and b'"images"' in text else NO


def _read(path: Path) -> tuple[list, dict]:
    try:
        data = _ANY.decode(json_bytes(path))
    except msgspec.DecodeError as e:
        raise BadFile("malformed_file", f"invalid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        what = json_type(data) if not isinstance(data, dict) else "an object without an 'images' list"
        raise BadFile("unknown_format", f"top-level JSON value is {what}, not a Visual7W file")
    raw_boxes = data.get("boxes")
    boxes = raw_boxes if isinstance(raw_boxes, list) else []
    return data["images"], {b["box_id"]: b for b in boxes if isinstance(b, dict) and type(b.get("box_id")) is int}


def _box_text(box: Any) -> str | None:
    vals = [box.get(k) for k in ("x", "y", "width", "height")] if isinstance(box, dict) else []
    if len(vals) != 4 or not all(type(v) in (int, float) for v in vals):
        return None
    return "[" + ", ".join(f"{v:g}" for v in vals) + "]"


def _option(text: str) -> str:
    """A telling answer or choice as an option: whitespace collapsed, a final period dropped."""
    return " ".join(text.split()).rstrip(".").rstrip()


def _qa(pair: dict, boxes: dict) -> tuple[str, str] | str:
    """(text, answer), or the reason the pair is unusable."""
    question, answer, choices = pair.get("question"), pair.get("answer"), pair.get("multiple_choices")
    if not nonempty_str(question):
        return "question is missing or empty"
    question = " ".join(question.split())
    if type(answer) is int:  # pointing: box ids
        if not isinstance(choices, list) or not all(type(c) is int for c in choices):
            return "multiple_choices of a pointing QA are not a list of box ids"
        ids = [answer, *choices]
        texts = {i: text for i in ids if (text := _box_text(boxes.get(i))) is not None}
        bad = [str(i) for i in ids if i not in texts]
        if bad:
            return f"box {', '.join(bad)} is not in 'boxes' or has no x, y, width, height numbers"
        ordered = sorted(dict.fromkeys(ids), key=lambda i: (boxes[i]["x"], boxes[i]["y"], i))
        return f"{question} Options: {', '.join(texts[i] for i in ordered)}.", texts[answer]
    if not nonempty_str(answer) or not _option(answer):
        return "answer is neither a non-empty string nor a box id"
    answer = _option(answer)
    if not isinstance(choices, list) or not choices or not all(nonempty_str(c) and _option(c) for c in choices):
        return question, answer
    options = sorted(dict.fromkeys([answer, *map(_option, choices)]), key=str.casefold)
    return f"{question} Options: {', '.join(options)}.", answer


def load_visual7w(path: Path, source: str) -> pl.DataFrame:
    """A Visual7W telling / pointing file -> source records (module docstring). Bad data never
    raises; only an unreadable path (OSError) does."""
    path = Path(path)
    base = {"source": source, "source_format": FORMAT}
    try:
        images, boxes = _read(path)
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])

    rows: list[dict] = []
    first_image: dict[int, int] = {}
    first_qa: dict[int, str] = {}
    for i, entry in enumerate(images):
        img: Any = entry.get("image_id") if isinstance(entry, dict) else None  # an int when good_id
        good_id = type(img) is int and img >= 0
        native = f"@{i}" if not good_id else f"{img}@{i}" if img in first_image else str(img)
        row: dict[str, Any] = {**base, "record_id": f"{source}#image/{native}", "kind": IMAGE, "image_key": None}
        problem: tuple[str, str] | None = None
        if not isinstance(entry, dict):
            problem = ("invalid_record", f"image entry [{i}] is {json_type(entry)}, not an object")
        elif not good_id:
            problem = ("invalid_record", "image_id is missing or not a non-negative integer")
        elif not nonempty_str(entry.get("filename")):
            problem = ("invalid_record", "filename is missing or empty")
        else:
            image_key_or_reject(entry["filename"].strip(), row)
            if row.get("reject_reason"):
                problem = (row["reject_reason"], row["reject_detail"])
            elif img in first_image:
                problem = ("duplicate_record_id", f"image_id {img} repeats image entry [{first_image[img]}]")
        pairs = entry.get("qa_pairs") if isinstance(entry, dict) else None
        if problem is None and not isinstance(pairs, list):
            problem = ("invalid_record", "qa_pairs is missing or not a list")
        if problem:
            row["reject_reason"], row["reject_detail"] = problem[0], problem[1][:_DETAIL_MAX]
        if good_id:
            first_image.setdefault(img, i)
        rows.append(row)
        for n, pair in enumerate(pairs if isinstance(pairs, list) else []):
            rows.append(_qa_row(base, source, i, n, pair, row["image_key"], boxes, problem, first_qa))
    return to_source_records(rows)


def _qa_row(base: dict, source: str, i: int, n: int, pair: Any, key: str | None, boxes: dict,
            image_problem: tuple[str, str] | None, first: dict[int, str]) -> dict:
    qid = pair.get("qa_id") if isinstance(pair, dict) else None
    qid = qid if type(qid) is int else None
    native = f"@{i}.{n}" if qid is None else f"{qid}@{i}.{n}" if qid in first else str(qid)
    row = {**base, "record_id": f"{source}#qa/{native}", "kind": QA, "image_key": key}
    if isinstance(pair, dict) and nonempty_str(pair.get("question")):
        row["text"] = " ".join(pair["question"].split())
    problem = (image_problem[0], f"its image entry is rejected: {image_problem[1]}") if image_problem else None
    if problem is None:
        if not isinstance(pair, dict):
            problem = ("invalid_record", f"qa_pairs[{n}] is {json_type(pair)}, not an object")
        elif qid is None:
            problem = ("invalid_record", "qa_id is missing or not an integer")
        elif qid in first:
            problem = ("duplicate_record_id", f"qa_id {qid} repeats {first[qid]}")
        else:
            qa = _qa(pair, boxes)
            if isinstance(qa, str):
                problem = ("invalid_record", qa)
            else:
                row["text"], row["answer"] = qa
    if qid is not None:
        first.setdefault(qid, f"image entry [{i}] qa_pairs[{n}]")
    if problem:
        row["reject_reason"], row["reject_detail"] = problem[0], problem[1][:_DETAIL_MAX]
    return row


LOADER = Loader(FORMAT, load_visual7w, detect, description="Visual7W telling / pointing JSON (multiple-choice QA)")

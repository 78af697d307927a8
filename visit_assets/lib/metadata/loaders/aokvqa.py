"""A-OKVQA loader (format `aokvqa`): one A-OKVQA questions file per split.

The official download (aokvqa_v1p0.tar.gz) holds, per split (train, val, test):

    aokvqa_v1p0_<split>.json   [{"split", "image_id", "question_id", "question", "choices": [4 strings],
                                 "correct_choice_idx", "direct_answers": [10 strings],
                                 "difficult_direct_answer", "rationales": [3 strings]}]
                               (test: no correct_choice_idx, direct_answers nor rationales)

A top-level JSON list; image_id is a COCO 2017 image id (integer), question_id a string.

Rows (see ..records), entries in file order:
  * one "image" row per distinct image_id, `<source>#image/<image_id>`, no width/height (A-OKVQA
    gives none); image_key `<split>2017/<image_id as 12 digits>.jpg`, the way the COCO 2017 zips
    (train2017.zip, val2017.zip, test2017.zip) unpack, so `images:` in dataset.yaml names the folder
    holding `train2017/` (or COCO's 2014 folders: ../coco_images.py resolves any COCO naming, and a
    picture also named by COCO 2014 / VQAv2 / RefCOCO is one record). The split is the entry's
    `split`, else the file name's;
  * one "qa" row per question, `<source>#qa/<question_id>`. Decision: the multiple-choice form is
    kept, because its answer is exact: text = "<question> Options: <c1>, <c2>, <c3>, <c4>.", answer
    = choices[correct_choice_idx] (always one of the options). When there is no usable correct
    choice (index missing, out of range, or options not a list of non-empty strings), text = the
    bare question and answer = the most common of `direct_answers` (ties to the first in order);
    with neither, invalid_record ("no answers"; the test split publishes none). `difficult_direct_answer`
    is not used (it grades the direct-answer task, not the picture);
  * one "caption" row per rationale, `<source>#caption/<question_id>/<n>`. Decision: a rationale is
    a statement about the image (it explains the answer from what is shown), so it is a caption of
    that image rather than part of the answer. Rationales of a rejected question are rejected with it.
So rows == questions + distinct valid image ids + rationales. An optional field of the wrong type
(split, choices, correct_choice_idx, direct_answers, rationales) counts as absent.

Rejects: invalid_record (entry not an object; question_id not a non-empty string, or with "/", "#"
or spaces in it; image_id not a non-negative integer; question empty; a rationale that is not a non-empty
string) > duplicate_record_id (question_id seen before: `<question_id>@<index>`, its rationales
too). A whole unreadable file is one `<source>#file` row: malformed_file (empty, not JSON) or
unknown_format (top-level value not a list).
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import polars as pl

from ..records import CAPTION, IMAGE, QA, to_source_records
from .common import BadFile, file_reject, json_bytes, most_common, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .vqa import json_type, typed_fields

FORMAT = "aokvqa"
_DETAIL_MAX = 300
_NAME = re.compile(r"^aokvqa_v[\w.]+?_(?P<split>[A-Za-z]+)\.json$")
_SAFE_SPLIT = re.compile(r"^[A-Za-z]+$")
_ANY = msgspec.json.Decoder()
_REQUIRED = {"question_id": str, "image_id": int, "question": str}
_OPTIONAL = {"split": str, "choices": list, "correct_choice_idx": int, "direct_answers": list, "rationales": list}


def detect(path: Path, head: bytes) -> int:
    """2 for an A-OKVQA file (a JSON list whose entries carry A-OKVQA's own keys), else 0."""
    text = head[3:] if head[:3] == b"\xef\xbb\xbf" else head
    if path.suffix != ".json" or text.lstrip()[:1] != b"[" or b'"question_id"' not in text:
        return NO
    if b'"correct_choice_idx"' in text or b'"difficult_direct_answer"' in text:
        return SIGNATURE
    if _NAME.match(path.name) and b'"choices"' in text:
        return SIGNATURE
    return NO


def image_key(image_id: int, split: str | None) -> str:
    return f"{split or 'train'}2017/{image_id:012d}.jpg"


def read_json_list(path: Path, what: str = "A-OKVQA") -> list:
    """The top-level JSON list of a file; raises BadFile (malformed_file, unknown_format)."""
    try:
        data = _ANY.decode(json_bytes(path))
    except msgspec.DecodeError as e:
        raise BadFile("malformed_file", f"invalid JSON: {e}") from None
    if not isinstance(data, list):
        raise BadFile("unknown_format", f"top-level JSON value is {json_type(data)}, not a {what} list")
    return data


def _mc(f: dict) -> tuple[str, str] | None:
    """(text with options, correct choice) when the multiple-choice fields are usable."""
    choices, idx = f["choices"], f["correct_choice_idx"]
    if not choices or not all(nonempty_str(c) for c in choices) or idx is None or not 0 <= idx < len(choices):
        return None
    options = [c.strip() for c in choices]
    return f"{f['question'].strip()} Options: {', '.join(options)}.", options[idx]


def load_aokvqa(path: Path, source: str) -> pl.DataFrame:
    """An A-OKVQA split file -> source records (module docstring). Bad data never raises; only an
    unreadable path (OSError) does."""
    path = Path(path)
    base = {"source": source, "source_format": FORMAT}
    try:
        entries = read_json_list(path)
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    m = _NAME.match(path.name)
    file_split = m["split"] if m else None

    rows: list[dict] = []
    images: dict[int, str] = {}
    first: dict[str, int] = {}
    for i, entry in enumerate(entries):
        f, note = typed_fields(entry, _REQUIRED)
        f.update(typed_fields(entry, _OPTIONAL)[0])  # an ill-typed optional field counts as absent
        qid, img, question = f["question_id"], f["image_id"], f["question"]
        split = f["split"] if f["split"] and _SAFE_SPLIT.match(f["split"]) else file_split
        key = images.get(img) if img is not None else None
        if key is None and img is not None and img >= 0:
            key = images[img] = image_key(img, split)
            rows.append({**base, "record_id": f"{source}#image/{img}", "kind": IMAGE, "image_key": key})
        good_id = nonempty_str(qid) and not re.search(r"[/#\s]", qid)
        native = f"@{i}" if not good_id else f"{qid}@{i}" if qid in first else qid
        row = {**base, "record_id": f"{source}#qa/{native}", "kind": QA, "image_key": key,
               "text": question.strip() if nonempty_str(question) else None}
        reason = "invalid_record"
        if note:
            problem = note
        elif qid is None:
            problem = "question_id is missing"
        elif not good_id:
            problem = f"question_id {qid[:80]!r} is empty or has '/', '#' or spaces"
        elif img is None:
            problem = "image_id is missing"
        elif img < 0:
            problem = f"image_id {img} is negative"
        elif row["text"] is None:
            problem = "question is missing or empty"
        elif qid in first:
            reason, problem = "duplicate_record_id", f"question_id {qid} repeats entry [{first[qid]}]"
        else:
            mc = _mc(f)
            if mc is not None:
                row["text"], row["answer"] = mc
                problem = None
            else:
                row["answer"] = most_common(f["direct_answers"])
                problem = None if row["answer"] else (
                    "no answers: the test split publishes questions only" if split == "test"
                    else "no usable correct_choice_idx / choices and no non-empty direct_answers")
        if problem:
            row["reject_reason"], row["reject_detail"] = reason, problem[:_DETAIL_MAX]
        rows.append(row)
        for n, rationale in enumerate(f["rationales"] or []):
            cap = {**base, "record_id": f"{source}#caption/{native}/{n}", "kind": CAPTION, "image_key": key,
                   "text": rationale.strip() if nonempty_str(rationale) else None}
            if problem:
                cap["reject_reason"], cap["reject_detail"] = reason, f"its question is rejected: {problem}"[:_DETAIL_MAX]
            elif cap["text"] is None:
                cap["reject_reason"], cap["reject_detail"] = "invalid_record", "rationale is not a non-empty string"
            rows.append(cap)
        if good_id:
            first.setdefault(qid, i)
    return to_source_records(rows)


LOADER = Loader(FORMAT, load_aokvqa, detect, description="A-OKVQA questions JSON (multiple choice + rationales)")

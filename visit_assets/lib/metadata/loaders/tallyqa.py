"""TallyQA loader (format `tallyqa`): a TallyQA counting-questions file (train.json or test.json).

The official download (tallyqa.zip) holds two files, each a top-level JSON list:

    train.json, test.json   [{"image", "answer", "data_source", "question", "image_id",
                              "question_id", "issimple"}]

`image` is the image's path, e.g. `VG_100K_2/2410408.jpg` (Visual Genome) or
`train2014/COCO_train2014_000000000009.jpg` (COCO 2014); `answer` is the count (an integer);
image_id and question_id are integers (Visual Genome image ids are offset so they never collide
with COCO's); `issimple` tells simple from complex questions; `data_source` where the pair came from
(amt, imported_genome, imported_vqa, ...).

Rows (see ..records), entries in file order:
  * one "image" row per distinct image_id, `<source>#image/<image_id>`, no width/height (TallyQA
    gives none), image_key = `image` as given: the paths are those of Visual Genome's
    (`VG_100K/`, `VG_100K_2/`) and COCO 2014's (`train2014/`, `val2014/`) zips as they unpack, so
    `images:` in dataset.yaml names one folder holding those folders side by side (a COCO key
    resolves to whichever COCO naming is on disk and meets other datasets' records of the picture:
    ../coco_images.py; a Visual Genome key meets the `visual_genome` loader's records, and follows
    them to the COCO file when image_data.json gives the image a coco_id);
  * one "qa" row per entry, `<source>#qa/<question_id>`: text = the question, answer = the count as
    a decimal string ("0" included). `issimple` and `data_source` are not kept (no record field;
    they describe the question, not the image).
So rows == entries + distinct image ids.

Rejects: unsafe_path (an `image` that is absolute or leaves the folder: the image row is not made)
> invalid_record (entry not an object; question_id or image_id not a non-negative integer; image not
a non-empty string; question empty; answer not a non-negative integer; an image_id seen before with
another image path) > duplicate_record_id (question_id seen before: `<question_id>@<index>`). A whole
unreadable file is one `<source>#file` row: malformed_file (empty, not JSON), unknown_format
(top-level value not a list).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..paths import UnsafePath, normalise_image_key
from ..records import IMAGE, QA, to_source_records
from .aokvqa import read_json_list
from .common import BadFile, file_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .vqa import typed_fields

FORMAT = "tallyqa"
_DETAIL_MAX = 300
_SPEC = {"image": str, "question": str, "image_id": int, "question_id": int, "answer": int}


def detect(path: Path, head: bytes) -> int:
    """2 for a TallyQA file (a JSON list whose entries carry `issimple`), else 0."""
    text = head[3:] if head[:3] == b"\xef\xbb\xbf" else head
    if path.suffix != ".json" or text.lstrip()[:1] != b"[":
        return NO
    if re.search(rb'"issimple"\s*:', text) and b'"question_id"' in text and b'"image"' in text:
        return SIGNATURE
    return NO


def _problem(f: dict, note: str | None) -> str | None:
    if note:
        return note
    for name in ("question_id", "image_id"):
        if f[name] is None:
            return f"{name} is missing"
        if f[name] < 0:
            return f"{name} {f[name]} is negative"
    if not nonempty_str(f["image"]):
        return "image is missing or empty"
    if not nonempty_str(f["question"]):
        return "question is missing or empty"
    if f["answer"] is None:
        return "answer is missing"
    if f["answer"] < 0:
        return f"answer {f['answer']} is negative"
    return None


def load_tallyqa(path: Path, source: str) -> pl.DataFrame:
    """A TallyQA file -> source records (module docstring). Bad data never raises; only an
    unreadable path (OSError) does."""
    path = Path(path)
    base = {"source": source, "source_format": FORMAT}
    try:
        entries = read_json_list(path, "TallyQA")
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])

    rows: list[dict] = []
    images: dict[int, str] = {}
    first: dict[int, int] = {}
    for i, entry in enumerate(entries):
        f, note = typed_fields(entry, _SPEC)
        qid, img, question = f["question_id"], f["image_id"], f["question"]
        reason, problem = "invalid_record", _problem(f, note)
        key = None
        if nonempty_str(f["image"]):
            try:
                key = normalise_image_key(f["image"])
            except UnsafePath as e:
                key, reason, problem = None, "unsafe_path", str(e)
        if key is not None and img is not None and img >= 0:
            if img not in images:
                images[img] = key
                rows.append({**base, "record_id": f"{source}#image/{img}", "kind": IMAGE, "image_key": key})
            elif images[img] != key and problem is None:
                problem = f"image_id {img} is {images[img]} elsewhere, here {key}"
        ok_id = qid is not None and qid >= 0
        native = f"@{i}" if not ok_id else f"{qid}@{i}" if qid in first else str(qid)
        row = {**base, "record_id": f"{source}#qa/{native}", "kind": QA, "image_key": key,
               "text": question.strip() if nonempty_str(question) else None,
               "answer": str(f["answer"]) if f["answer"] is not None and f["answer"] >= 0 else None}
        if problem is None and qid in first:
            reason, problem = "duplicate_record_id", f"question_id {qid} repeats entry [{first[qid]}]"
        if problem:
            row["reject_reason"], row["reject_detail"] = reason, problem[:_DETAIL_MAX]
        if ok_id:
            first.setdefault(qid, i)
        rows.append(row)
    return to_source_records(rows)

LOADER = Loader(FORMAT, load_tallyqa, detect, description="TallyQA counting questions JSON (VG + COCO images)")

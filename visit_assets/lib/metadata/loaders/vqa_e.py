"""VQA-E loader (format `vqa_e`): VQA-E's `VQA-E_<split>_set.json` (Li et al., ECCV 2018).

VQA-E adds an explanation to VQA v2 questions on COCO 2014 images. The release (github.com/liqing-ustc/
VQA-E) is one JSON list per split, train and val:

    VQA-E_train_set.json   [{"img_id": 9, "question": "...?", "multiple_choice_answer": "yes",
                             "answers": [...], "explanation": ["<sentence>", <score>], ...}, ...]

Confirmed from public readers of the files: the file names, a top-level list, `img_id` as COCO's
integer image id, `question`, `multiple_choice_answer`, `explanation` as [sentence, score] (its first
item is the text), and the images being COCO 2014's (`COCO_<split>2014_<12-digit id>.jpg`). Not
confirmed: the other keys (an `answers` list is read as VQA's when present, for entries without a
consensus answer) and whether entries carry a question id (none is used: rows are numbered).

Rows (see ..records), entries in file order:
  * one "image" row per distinct img_id, `<source>#image/<img_id>`, image_key
    `COCO_<split>2014_<12-digit img_id>.jpg` (the split from the file name, else train), so the VQA-E
    questions of a picture meet its COCO and VQAv2 records (../coco_images.py);
  * one "qa" row per entry, `<source>#qa/<index>`: text = the question, answer =
    `multiple_choice_answer` (else the most common of `answers`);
  * one "caption" row per entry with an explanation, `<source>#caption/<index>`: the explanation is
    a sentence about the picture (VQA-E built them from its COCO captions), so it is a fact like a
    caption (grouping drops it where it repeats another caption of the image).
Rejects: invalid_record (entry not an object; img_id not a non-negative integer; question empty; no
answer) on the QA row (the explanation of a rejected entry is not kept). A whole unreadable file is
one `<source>#file` row: malformed_file (empty, not JSON), unknown_format (top-level value not a list).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from ..records import CAPTION, to_source_records
from .common import BadFile, file_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .textrich_common import Rows, as_answer, most_common, read_top, strip_bom

FORMAT = "vqa_e"
_NAME = re.compile(r"^VQA-E_(?P<split>train|val)_set\.json$", re.IGNORECASE)


def detect(path: Path, head: bytes) -> int:
    """2 for a VQA-E file (a JSON list of entries with img_id and explanation), else 0."""
    text = strip_bom(head)
    if path.suffix != ".json" or text.lstrip()[:1] != b"[":
        return NO
    return SIGNATURE if b'"img_id"' in text and b'"explanation"' in text else NO


def _explanation(entry: dict) -> str | None:
    value = entry.get("explanation")
    text = value[0] if isinstance(value, list) and value else value
    return " ".join(text.split()) if nonempty_str(text) else None


def load_vqa_e(path: Path, source: str) -> pl.DataFrame:
    """A VQA-E file -> source records (module docstring). Bad data never raises; only an unreadable
    path (OSError) does."""
    path = Path(path)
    try:
        entries = read_top(path, list, "VQA-E")
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    m = _NAME.match(path.name)
    split = m["split"].lower() if m else "train"
    out = Rows(source, FORMAT)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            out.qa(str(i), i, None, None, None, ("invalid_record", f"entry is not an object ({type(entry).__name__})"))
            continue
        img = entry.get("img_id")
        ok_id = isinstance(img, int) and not isinstance(img, bool) and img >= 0
        key = out.image(str(img), f"COCO_{split}2014_{img:012d}.jpg") if ok_id else None
        answer = as_answer(entry.get("multiple_choice_answer")) or most_common(
            [a.get("answer") for a in entry.get("answers") or [] if isinstance(a, dict)])
        problem = None if ok_id else ("invalid_record", f"img_id {img!r} is not a non-negative integer")
        row = out.qa(str(i), i, key, entry.get("question"), answer, problem)
        explanation = _explanation(entry)
        if explanation and not row.get("reject_reason"):
            out.rows.append({**out.base, "record_id": f"{source}#caption/{i}", "kind": CAPTION, "image_key": key,
                             "text": explanation})
    return out.frame()


LOADER = Loader(FORMAT, load_vqa_e, detect, description="VQA-E (VQA v2 questions with explanations, COCO 2014)")

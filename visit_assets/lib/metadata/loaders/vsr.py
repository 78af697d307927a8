"""VSR loader (format `vsr`): a Visual Spatial Reasoning JSONL file (`train.jsonl`, `dev.jsonl`,
`test.jsonl` of splits/random or splits/zeroshot, or data_files/all_vsr_validated_data.jsonl).

One JSON object per line, each a true/false statement about the spatial relation of two objects
in a COCO 2017 image:

    {"image": "000000085637.jpg", "image_link": "http://images.cocodataset.org/train2017/000000085637.jpg",
     "caption": "The person is at the left side of the umbrella.", "label": 1 (1 true, 0 false),
     "relation": "left of", "subj": "person", "obj": "umbrella", "annotator_id": 31,
     "vote_true_validator_id": [...], "vote_false_validator_id": [...]}

Images: VSR's data README gathers the COCO 2017 train and val images it uses into one flat
`images/` folder (or its own vsr_images.zip), so image_key is `image` as given (a file name) and
`images:` in dataset.yaml names that flat folder. `image_link` (a URL) is not used. A 12-digit
name is a COCO picture: in a folder mixing datasets it resolves to COCO's `train2017/` (or 2014)
file when that is there, and meets the other datasets' records of it (../coco_images.py).

Rows (see ..records):
  * one "image" row per distinct image, `<source>#image/<image>` (no size in the file: null);
  * one "qa" row per line, `<source>#qa/<line number>` (VSR has no statement id; line numbers are
    1-based and count blank lines, so an id stays put when other lines change): text =
    "Is this true: <caption>", answer "yes" (label 1) or "no" (label 0).
    Decision: every statement becomes a yes/no QA, none a caption. VSR is a verification task with
    both labels in even measure; only the true half could be captions (a false statement about an
    image is not a caption), which would throw away the negatives that teach the relation instead
    of the objects' mere presence. A true statement is not also emitted as a caption: one input
    record, one row, and the QA already carries it. relation / subj / obj and the annotator and
    validator ids have no record field and are dropped.
So rows == lines (non-blank) + distinct valid images.

Rejects: a line that is not JSON is one `<source>#line/<n>` malformed_file row, a line that is
not an object one `<source>#line/<n>` invalid_record row (the rest of the file still loads);
a QA row is invalid_record when the caption is missing or empty, the label is not 0/1 (true/false
is accepted too), or the image is missing or not a string; an image that is absolute or leaves the
image folder is unsafe_path (no image row). An empty file or one that is not UTF-8 is one
`<source>#file` malformed_file row.

Detection: 2 for a `.jsonl` file whose first line is an object with "image", "caption", "label",
"relation", "subj" and "obj" (VSR only), beating the `records` loader's 1 for any JSONL.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from ..records import IMAGE, INVALID, QA, to_source_records
from .common import BadFile, file_reject, image_key_or_reject, nonempty_str
from .registry import NO, SIGNATURE, Loader
from .vqa import json_type

FORMAT = "vsr"
_DETAIL_MAX = 300
_SIGNATURE_KEYS = {"image", "caption", "label", "relation", "subj", "obj"}
_LABELS = {1: "yes", 0: "no"}  # True == 1, False == 0


def detect(path: Path, head: bytes) -> int:
    """2 for a VSR JSONL file (module docstring), else 0."""
    if path.suffix != ".jsonl":
        return NO
    text = head[3:] if head[:3] == b"\xef\xbb\xbf" else head
    first = next((line for line in text.split(b"\n") if line.strip()), b"")
    try:
        obj = json.loads(first.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return NO
    return SIGNATURE if isinstance(obj, dict) and _SIGNATURE_KEYS <= obj.keys() else NO


def read_lines(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    if raw[:3] == b"\xef\xbb\xbf":
        raw = raw[3:]
    if not raw.strip():
        raise BadFile("malformed_file", "the file is empty")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadFile("malformed_file", f"not UTF-8: {e}") from None
    return raw.split(b"\n")

def json_objects(lines: list[bytes], base: dict, rows: list[dict]):
    """(line number, object) for each JSON-object line; a line that is not JSON, or not an object,
    becomes a reject row `<source>#line/<n>` in `rows` (blank lines are not records)."""
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except json.JSONDecodeError as e:
            rows.append({**base, "record_id": f"{base['source']}#line/{n}", "kind": INVALID,
                         "reject_reason": "malformed_file", "reject_detail": f"line {n}: invalid JSON: {e}"[:_DETAIL_MAX]})
            continue
        if not isinstance(obj, dict):
            rows.append({**base, "record_id": f"{base['source']}#line/{n}", "kind": INVALID,
                         "reject_reason": "invalid_record", "reject_detail": f"line {n} is {json_type(obj)}, not an object"})
            continue
        yield n, obj


def _answer(label: object) -> str | None:
    if isinstance(label, bool) or (type(label) is int and label in (0, 1)):
        return _LABELS[label]
    return None


def _problem(obj: dict, answer: str | None) -> str | None:
    caption = obj.get("caption")
    if caption is not None and not isinstance(caption, str):
        return f"caption is {json_type(caption)}, not a string"
    if not nonempty_str(caption):
        return "caption is missing or empty"
    if answer is None:
        label = obj.get("label")
        return "label is missing" if label is None else f"label {str(label)[:40]} is not 0/1 (false/true)"
    return None


def load_vsr(path: Path, source: str) -> pl.DataFrame:
    """A VSR JSONL file -> source records (module docstring). Bad data never raises; only an
    unreadable path (OSError) does."""
    base = {"source": source, "source_format": FORMAT}
    try:
        lines = read_lines(Path(path))
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    rows: list[dict] = []
    images: set[str] = set()
    for n, obj in json_objects(lines, base, rows):
        answer = _answer(obj.get("label"))
        caption = obj.get("caption")
        row = {**base, "record_id": f"{source}#qa/{n}", "kind": QA, "answer": answer,
               "text": f"Is this true: {caption.strip()}" if nonempty_str(caption) else None}
        image = obj.get("image")
        if not isinstance(image, str):
            row["image_key"] = None
            row["reject_reason"] = "invalid_record"
            row["reject_detail"] = "image is missing" if image is None else f"image is {json_type(image)}, not a string"
        else:
            image_key_or_reject(image, row)
        key = row["image_key"]
        if key is not None and key not in images:
            images.add(key)
            rows.append({**base, "record_id": f"{source}#image/{key}", "kind": IMAGE, "image_key": key})
        problem = _problem(obj, answer)
        if problem and not row.get("reject_reason"):
            row["reject_reason"], row["reject_detail"] = "invalid_record", problem[:_DETAIL_MAX]
        rows.append(row)
    return to_source_records(rows)


LOADER = Loader(FORMAT, load_vsr, detect, description="VSR (Visual Spatial Reasoning) JSONL: yes/no spatial QA",
                suffixes=(".jsonl",))

"""GQA loader (format `gqa`): a GQA questions file, `<split>_balanced_questions.json` or
`<split>_all_questions.json` (train_all is shipped as `train_all_questions/train_all_questions_<n>.json`),
or a GQA scene-graph file `<split>_sceneGraphs.json` (train, val), each a source of its own: the two
share image keys, not a companion relation, so either loads without the other.

The official questions download, per file:

    {"<question id>": {"imageId": "2354786" | "n161313", "question", "answer": "a word",
                       "fullAnswer": "a sentence", "isBalanced", "groups": {"global", "local"},
                       "entailed": [ids], "equivalent": [ids], "types": {"structural", "semantic",
                       "detailed"}, "annotations": {"question", "answer", "fullAnswer"},
                       "semantic": [program steps], "semanticStr"}, ...}
    (test / challenge / submission: only "imageId", "question", "isBalanced" per question)

Images come in the official images.zip, which unpacks to `images/<imageId>.jpg`: image_key is that
path, so `images:` in dataset.yaml names the folder holding `images/`. The questions file gives no
image size (width/height null; the scene-graph files have them, as sources of their own, below).

Rows (see ..records):
  * one "image" row per distinct valid imageId, `<source>#image/<imageId>`, in order of first use;
  * one "qa" row per question, `<source>#qa/<question id>`: text = question, answer = `answer`.
    Decision: the short `answer`, not `fullAnswer`. `answer` is the answer GQA is evaluated on and
    is the one every answer distribution is balanced over; `fullAnswer` is generated from a template
    that restates the question around that same word ("The cup is on the table."), so it adds no
    information and would teach a verbose style the rest of the QA data does not have. `fullAnswer`
    is used nowhere. The rest (program, types, groups, entailed/equivalent ids, isBalanced) has no
    record field and is dropped; an `_all_` file's unbalanced questions are kept like the others
    (the user chose the file).
So rows == questions + distinct valid image ids. Only imageId / question / answer are decoded (the
train files are gigabytes); a file with an ill-typed entry is decoded plainly and checked entry by entry.

Rejects (invalid_record; each question still a row): entry not an object; a field of the wrong
type; imageId missing or not a plain file name; question empty; no non-empty `answer` (the test,
challenge and submission splits publish questions only). A question id is a JSON object key, so
ids are unique by construction (a repeated key in a hand-made file keeps its last value, as any
JSON reader does). A whole unusable file (empty, not JSON, not UTF-8) is one `<source>#file`
malformed_file row; a JSON value that is not an object keyed by question id is unknown_format.

Scene graphs, `{"<imageId>": {"width", "height", "objects": {"<objId>": {"name", "x", "y", "w", "h",
"attributes": [...], "relations": [{"name", "object"}]}}, ("location", "weather")}}`:
  * one "image" row per image, `<source>#image/<imageId>`, image_key `images/<imageId>.jpg`,
    width/height as given;
  * one "box" row per object, `<source>#box/<imageId>/<objId>`: label = name, bbox = x, y, w, h in
    pixels (bbox_norm false; QC checks them against the size). Attributes and relations have no
    record field and are dropped (a label stays the object's name, as Visual Genome's does).
  Rejects: an image entry that is not an object, or whose "objects" is not an object, is an
  invalid_record image row (its objects give no rows); an imageId that is not a plain file name
  rejects the image row and its boxes (invalid_record); an object that is not an object, has no
  name, or a non-numeric x/y/w/h is an invalid_record box row.
  So rows == images + objects.

Detection: 2 for a `.json` file that opens as an object keyed by id whose first value has
"imageId" and "question" plus one of "isBalanced" / "fullAnswer" / "semanticStr", or has "objects"
with objects carrying "relations" and "attributes" (GQA only: Visual Genome's files are lists);
nothing else claims such files (COCO wants an "images"/"annotations" list). Which of the two a
file is, `load` decides from its first object entry (scene graphs: "objects" and no "question").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from ..records import BOX, IMAGE, QA, to_source_records
from .common import BadFile, as_size, file_reject, nonempty_str
from .registry import HEAD_BYTES, NO, SIGNATURE, Loader
from .vqa import json_type, typed_fields

FORMAT = "gqa"
_DETAIL_MAX = 300
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_KEYED_OBJECT = re.compile(rb'^\{\s*"[^"\\]{1,64}"\s*:\s*\{')
_MARKS = (b'"isBalanced"', b'"fullAnswer"', b'"semanticStr"')
_OBJECTS = re.compile(rb'"objects"\s*:\s*\{')
_ANY = msgspec.json.Decoder()


class _Question(msgspec.Struct, gc=False):
    imageId: str  # noqa: N815 - GQA's key
    question: str
    answer: str | None = None


_QUESTIONS = msgspec.json.Decoder(dict[str, _Question])
_SPEC = {"imageId": str, "question": str, "answer": str}


def detect(path: Path, head: bytes) -> int:
    """2 for a GQA questions file (module docstring), else 0."""
    text = (head[3:] if head[:3] == b"\xef\xbb\xbf" else head).lstrip()
    if path.suffix != ".json" or not _KEYED_OBJECT.match(text):
        return NO
    if b'"imageId"' in text and b'"question"' in text and any(m in text for m in _MARKS):
        return SIGNATURE
    if _OBJECTS.search(text) and b'"relations"' in text and b'"attributes"' in text and b'"name"' in text:
        return SIGNATURE
    return NO


def image_key(image_id: str) -> str:
    return f"images/{image_id}.jpg"


def _read(path: Path) -> dict:
    buf = path.read_bytes()
    if buf[:3] == b"\xef\xbb\xbf":
        buf = buf[3:]
    if not buf.strip():
        raise BadFile("malformed_file", "the file is empty")
    if not _OBJECTS.search(buf[:HEAD_BYTES]):  # questions: decode only the three fields read (train files are GBs)
        try:
            return _QUESTIONS.decode(buf)
        except msgspec.ValidationError:
            pass  # an ill-typed entry somewhere: the plain decode below, checked entry by entry
        except msgspec.DecodeError as e:
            raise BadFile("malformed_file", f"invalid JSON: {e}") from None
    try:
        data = _ANY.decode(buf)
    except msgspec.DecodeError as e:
        raise BadFile("malformed_file", f"invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadFile("unknown_format",
                      f"top-level JSON value is {json_type(data)}, not a GQA object keyed by question or image id")
    return data


def _problem(f: dict, note: str | None, img: Any, safe_img: str | None, text: str | None) -> str | None:
    if note:
        return note
    if img is None:
        return "imageId is missing"
    if safe_img is None:
        return f"imageId {img[:80]!r} is not a plain file name"
    if text is None:
        return "question is missing or empty"
    if not nonempty_str(f["answer"]):
        return "no answer: the test, challenge and submission splits publish questions only"
    return None


def load_gqa(path: Path, source: str) -> pl.DataFrame:
    """A GQA questions file -> source records (module docstring). Bad data never raises; only an
    unreadable path (OSError) does."""
    base = {"source": source, "source_format": FORMAT}
    try:
        questions = _read(Path(path))
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    first = next((v for v in questions.values() if isinstance(v, (dict, msgspec.Struct))), None)
    if isinstance(first, dict) and "objects" in first and "question" not in first:
        return to_source_records(_scene_graph_rows(questions, base, source))
    rows: list[dict] = []
    images: set[str] = set()
    for qid, entry in questions.items():
        f, note = typed_fields(entry, _SPEC)
        img, text = f["imageId"], f["question"].strip() if nonempty_str(f["question"]) else None
        safe_img = img if img is not None and _SAFE_ID.match(img) else None
        key = image_key(safe_img) if safe_img else None
        if safe_img and safe_img not in images:
            images.add(safe_img)
            rows.append({**base, "record_id": f"{source}#image/{safe_img}", "kind": IMAGE, "image_key": key})
        row = {**base, "record_id": f"{source}#qa/{qid}", "kind": QA, "image_key": key, "text": text,
               "answer": f["answer"].strip() if nonempty_str(f["answer"]) else None}
        problem = _problem(f, note, img, safe_img, text)
        if problem:
            row["reject_reason"], row["reject_detail"] = "invalid_record", problem[:_DETAIL_MAX]
        rows.append(row)
    return to_source_records(rows)


def _number(v: Any) -> bool:
    return type(v) in (int, float)


def _box_row(obj: Any, base: dict, rid: str, key: str | None, bad_image: str | None) -> dict:
    row = {**base, "record_id": rid, "kind": BOX, "image_key": key}
    if not isinstance(obj, dict):
        problem: str | None = f"object is {json_type(obj)}, not an object"
    else:
        xywh: list[Any] = [obj.get(k) for k in ("x", "y", "w", "h")]
        if nonempty_str(obj.get("name")):
            row["label"] = obj["name"].strip()
        if all(_number(v) for v in xywh):
            row.update(bbox_x=float(xywh[0]), bbox_y=float(xywh[1]), bbox_w=float(xywh[2]), bbox_h=float(xywh[3]),
                       bbox_norm=False)
        problem = bad_image or ("name is missing or empty" if "label" not in row else None) or (
            None if all(_number(v) for v in xywh) else "x, y, w, h are not all numbers")
    if problem:
        row["reject_reason"], row["reject_detail"] = "invalid_record", problem[:_DETAIL_MAX]
    return row


def _scene_graph_rows(graphs: dict, base: dict, source: str) -> list[dict]:
    rows: list[dict] = []
    for img, graph in graphs.items():
        safe = img if _SAFE_ID.match(img) else None
        key = image_key(safe) if safe else None
        image = {**base, "record_id": f"{source}#image/{img}", "kind": IMAGE, "image_key": key}
        objects = graph.get("objects") if isinstance(graph, dict) else None
        problem = (f"image entry is {json_type(graph)}, not an object" if not isinstance(graph, dict)
                   else f"imageId {img[:80]!r} is not a plain file name" if safe is None
                   else f"objects is {json_type(objects)}, not an object" if not isinstance(objects, dict | None)
                   else None)
        if isinstance(graph, dict):
            image.update(width=as_size(graph.get("width")), height=as_size(graph.get("height")))
        if problem:
            image["reject_reason"], image["reject_detail"] = "invalid_record", problem[:_DETAIL_MAX]
        rows.append(image)
        if isinstance(objects, dict):
            bad_image = problem and f"image {img[:80]!r}: {problem}"
            rows += [_box_row(obj, base, f"{source}#box/{img}/{oid}", key, bad_image) for oid, obj in objects.items()]
    return rows


LOADER = Loader(FORMAT, load_gqa, detect, description="GQA questions JSON (QA, short answers) or scene graphs (boxes)")

"""VQA loader (format `vqav2`): a VQA questions file, read together with its annotations file.

The official download is two JSON files per split, side by side:

    v2_OpenEnded_mscoco_<subtype>_questions.json   {"info", "task_type", "data_type", "license",
                                                    "data_subtype", "questions": [{"image_id",
                                                    "question", "question_id"}]}
    v2_mscoco_<subtype>_annotations.json           {"info", "license", "data_subtype", "data_type",
                                                    "annotations": [{"question_type",
                                                    "multiple_choice_answer", "answers": [{"answer",
                                                    "answer_confidence", "answer_id"}] x10,
                                                    "image_id", "answer_type", "question_id"}]}

The questions file is the source; the annotations file is its companion (registry.py), found by
the naming convention in the same folder: `[v2_]{OpenEnded|MultipleChoice}_<rest>_questions.json`
-> `[v2_]<rest>_annotations.json`. The same loader reads OK-VQA (`OpenEnded_mscoco_<subtype>_
questions.json` + `mscoco_<subtype>_annotations.json`, same structure; its annotations have no
`multiple_choice_answer`) and VQA v1: one format name, `vqav2`, for all three.

Rows (see ..records), questions in file order:
  * one "image" row per distinct image_id, `<source>#image/<image_id>`, no width/height (VQA gives none);
  * one "qa" row per question, `<source>#qa/<question_id>`: text = the question, answer = the
    annotation's `multiple_choice_answer` (VQA's consensus answer); when that is absent or empty
    (OK-VQA) the most common of its `answers[].answer`, ties going to the first in order;
  * one "invalid" row `<source>#annotation/<question_id>` (or `@<index>`) per annotation entry that
    cannot be joined to a question: ill-typed, a repeated question_id, or no such question.
So rows == questions + distinct valid image ids + unjoinable annotations; nothing is dropped.

QA reject rules, first match wins: invalid_record (entry not an object; question_id, image_id or
question missing / ill-typed / empty; negative image_id) > duplicate_record_id (question_id seen
earlier; its id gets `@<index>`) > no answers: test / test-dev splits publish none, so their
questions are invalid_record ("no answers: ..."); another split whose annotations file is absent
gives missing_companion; an unreadable annotations file gives its own reason (malformed_file,
unknown_format) > invalid_record (no annotation for the question, the annotation names another
image_id, or gives no answer). An annotations file loaded on its own (its questions file absent
or named otherwise) is one `missing_companion` row `<source>#file`.

Image keys follow COCO's 2014 file names, the same as `file_name` in COCO's own 2014 caption /
instance files, so VQA questions and COCO captions of one picture land on the same image:
  mscoco         `COCO_<subtype>_<12-digit image_id>.jpg`  (train2014, val2014; test-dev2015 and
                 test2015 questions -> `COCO_test2015_...`)
  abstract_v002  `abstract_v002_<subtype>_<12-digit image_id>.png`
with no folder. The subtype and data type come from the questions file's `data_subtype` /
`data_type` (plain words only: letters, digits, "_", "-"), else from its name; with neither, the
key is the 2017 name `<12-digit image_id>.jpg`. A COCO key is then resolved to the picture's file
wherever the image folder holds it, under any COCO naming (../coco_images.py): `train2014/`,
`val2014/` as the official 2014 zips unpack, the same names flat, or the 2017 files
(`train2017/000000000009.jpg`: the same pictures under other names and splits), so no links are
needed, and a picture also named by A-OKVQA, LVIS or Visual Genome is one record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import polars as pl

from ..records import IMAGE, INVALID, QA, to_source_records
from .common import BadFile, file_reject, json_bytes, most_common, nonempty_str
from .registry import NO, SIGNATURE, Loader

FORMAT = "vqav2"
_DETAIL_MAX = 300
_QUESTIONS_NAME = re.compile(r"^(?P<v>v2_)?(?:OpenEnded|MultipleChoice)_(?P<rest>.+)_questions\.json$")
_DATA_TYPES = ("mscoco", "abstract_v002")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_QUESTIONS_LIST = re.compile(rb'"questions"\s*:\s*\[')
_ANNOTATIONS_LIST = re.compile(rb'"annotations"\s*:\s*\[')


# ------------------------------------------------------------------------------------------------
# file names, detection, companions
# ------------------------------------------------------------------------------------------------


def annotations_path(questions: Path) -> Path | None:
    """The annotations file the naming convention pairs with a questions file (may not exist)."""
    m = _QUESTIONS_NAME.match(questions.name)
    return questions.with_name(f"{m['v'] or ''}{m['rest']}_annotations.json") if m else None


def companions(path: Path) -> list[Path]:
    ann = annotations_path(Path(path))
    return [ann] if ann is not None else []


def detect(path: Path, head: bytes) -> int:
    """2 (signature) for a VQA questions or annotations file, else 0. The annotations file also
    matches COCO's generic claim (an "annotations" list), which this outranks."""
    text = head[3:] if head[:3] == b"\xef\xbb\xbf" else head
    if path.suffix != ".json" or text.lstrip()[:1] != b"{":
        return NO
    if _QUESTIONS_LIST.search(text) and (b'"question_id"' in text or _QUESTIONS_NAME.match(path.name)):
        return SIGNATURE
    if _ANNOTATIONS_LIST.search(text) and b'"question_id"' in text and (
            b'"answers"' in text or b'"multiple_choice_answer"' in text):
        return SIGNATURE
    return NO


# ------------------------------------------------------------------------------------------------
# decoding: typed and lean when the file is well formed, generic and checked entry by entry if not
# ------------------------------------------------------------------------------------------------


class _Question(msgspec.Struct, gc=False):
    question_id: int
    image_id: int
    question: str


class _Annotation(msgspec.Struct, gc=False):
    question_id: int
    image_id: int
    multiple_choice_answer: str | None = None
    # decoded only when multiple_choice_answer is missing (msgspec has no `Raw | None`: null stays Raw)
    answers: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class _QuestionsDoc(msgspec.Struct):
    questions: list[_Question]
    data_type: str | None = None
    data_subtype: str | None = None


class _AnnotationsDoc(msgspec.Struct):
    annotations: list[_Annotation]


_TYPED: dict[str, msgspec.json.Decoder] = {"questions": msgspec.json.Decoder(_QuestionsDoc),
                                           "annotations": msgspec.json.Decoder(_AnnotationsDoc)}
_TOP_FIELDS = ("data_type", "data_subtype")
_ANY = msgspec.json.Decoder()


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    names: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return names.get(type(v), type(v).__name__)


def read_list(path: Path, key: str, typed: msgspec.json.Decoder, top_fields: tuple[str, ...] = (),
              what: str = "VQA") -> tuple[list, dict]:
    """(entries of the `key` list, the top-level fields but that list). Entries are structs when
    `typed` decodes the whole file, else plain decoded values (checked by `typed_fields`); only the
    `top_fields` of the typed document are returned. Raises BadFile."""
    buf = json_bytes(path)
    try:
        doc = typed.decode(buf)
        return getattr(doc, key), {f: getattr(doc, f, None) for f in top_fields}
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as e:
        raise BadFile("malformed_file", f"invalid JSON: {e}") from None
    try:  # the typed decode may stop at the first ill-typed value, before a syntax error further on
        data = _ANY.decode(buf)
    except msgspec.DecodeError as e:
        raise BadFile("malformed_file", f"invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadFile("unknown_format", f"top-level JSON value is {json_type(data)}, not a {what} object")
    if key not in data:
        keys = ", ".join(sorted(map(str, data))[:8]) or "none"
        raise BadFile("unknown_format", f"JSON object has no {key!r} list (keys: {keys})")
    if not isinstance(data[key], list):
        raise BadFile("unknown_format", f"{key!r} is {json_type(data[key])}, not a list")
    return data.pop(key), data


_TYPE_NAMES = {int: "an integer", str: "a string", list: "an array", dict: "an object"}


def typed_fields(entry: Any, spec: Mapping[str, type]) -> tuple[dict, str | None]:
    """The fields of `spec` found with the right type (bool is not int), and a note on the others."""
    if isinstance(entry, msgspec.Struct):
        return {k: getattr(entry, k, None) for k in spec}, None
    if not isinstance(entry, dict):
        return dict.fromkeys(spec), f"entry is {json_type(entry)}, not an object"
    out, notes = {}, []
    for name, typ in spec.items():
        v = entry.get(name)
        ok = v is None or (type(v) is typ if typ is int else isinstance(v, typ))
        out[name] = v if ok else None
        if not ok:
            notes.append(f"{name} is {json_type(v)}, not {_TYPE_NAMES.get(typ, typ.__name__)}")
    return out, "; ".join(notes) or None


def _consensus(mca: str | None, answers: Any) -> str | None:
    """multiple_choice_answer, else the most common of answers[].answer (ties: first in order)."""
    if nonempty_str(mca):
        return mca.strip()
    if isinstance(answers, msgspec.Raw):
        try:
            answers = _ANY.decode(answers)
        except msgspec.DecodeError:  # pragma: no cover - the typed decode validated the syntax
            return None
    if not isinstance(answers, list):
        return None
    return most_common(a.get("answer") for a in answers if isinstance(a, dict))


# ------------------------------------------------------------------------------------------------
# rows
# ------------------------------------------------------------------------------------------------


def _split_info(path: Path, top: dict) -> tuple[str | None, str | None]:
    """(data_type, data_subtype) from the questions file's fields, else from its name. Both become
    part of image file names: anything but letters, digits, "_" and "-" counts as absent."""
    safe = lambda v: v if isinstance(v, str) and _SAFE_NAME.match(v) else None  # noqa: E731
    data_type, subtype = safe(top.get("data_type")), safe(top.get("data_subtype"))
    m = _QUESTIONS_NAME.match(path.name)
    if m:
        for dt in _DATA_TYPES:
            if m["rest"].startswith(dt + "_"):
                data_type, subtype = data_type or dt, subtype or safe(m["rest"][len(dt) + 1 :])
    return data_type, subtype


def _key_format(data_type: str | None, subtype: str | None) -> str:
    if not subtype:
        return "{:012d}.jpg"
    split = re.sub(r"^test-dev", "test", subtype)  # test-dev questions are about test images
    if data_type == "abstract_v002":
        return f"abstract_v002_{split}_{{:012d}}.png"
    return f"COCO_{split}_{{:012d}}.jpg"


def image_key(data_type: str | None, subtype: str | None, image_id: int) -> str:
    """The image file a VQA image_id names (module docstring)."""
    return _key_format(data_type, subtype).format(image_id)


def _annotations(path: Path, subtype: str | None) -> tuple[dict, list, tuple[str, str] | None]:
    """(the join table and the annotation rejects of `_join_table`, None), or ({}, [], (reason,
    detail) for every question) when there are no usable annotations."""
    ann = annotations_path(path)
    if ann is None or not ann.is_file():
        if subtype and subtype.startswith("test"):
            return {}, [], ("invalid_record", f"no answers: the {subtype} split publishes questions only")
        where = ann.name if ann is not None else "[v2_]<data type>_<subtype>_annotations.json"
        return {}, [], ("missing_companion", f"annotations file {where} not found beside the questions file")
    try:
        entries, _ = read_list(ann, "annotations", _TYPED["annotations"])
    except BadFile as e:
        return {}, [], (e.reason, f"annotations file {ann.name}: {e.detail}")
    return *_join_table(entries, ann.name), None


def _join_table(entries: list, ann_name: str) -> tuple[dict, list[tuple]]:
    """{question_id: (image_id, answer or None, index)} for the first entry of each usable question_id,
    and (index, question_id or None, reason, detail) for every other entry."""
    spec = {"question_id": int, "image_id": int, "multiple_choice_answer": str}
    table: dict[int, tuple] = {}
    bad: list[tuple] = []
    for i, entry in enumerate(entries):
        f, note = typed_fields(entry, spec)
        qid = f["question_id"]
        if note or qid is None:
            bad.append((i, qid, "invalid_record",
                        f"{ann_name} annotations[{i}]: {note or 'question_id is missing'}"))
        elif qid in table:
            bad.append((i, qid, "duplicate_record_id",
                        f"{ann_name} annotations[{i}]: question_id {qid} repeats annotations[{table[qid][2]}]"))
        else:
            answers = entry.answers if isinstance(entry, _Annotation) else entry.get("answers")  # typed: an _Annotation
            table[qid] = (f["image_id"], _consensus(f["multiple_choice_answer"], answers), i)
    return table, bad


def load_vqa(path: Path, source: str) -> pl.DataFrame:
    """A VQA questions file (+ its annotations) -> source records (module docstring). Bad data
    never raises; only an unreadable path (OSError) does."""
    path = Path(path)
    try:
        questions, top = read_list(path, "questions", _TYPED["questions"], _TOP_FIELDS)
    except BadFile as e:
        if e.reason == "unknown_format" and "'questions'" in e.detail and _is_annotations(path):
            e = BadFile("missing_companion",
                        "a VQA annotations file is read with its questions file "
                        "([v2_]OpenEnded_<data type>_<subtype>_questions.json, same folder), which is absent")
        return to_source_records([file_reject(source, FORMAT, e)])
    data_type, subtype = _split_info(path, top)
    joined, ann_bad, no_answer = _annotations(path, subtype)
    ann_name = (annotations_path(path) or path).name
    key_format = _key_format(data_type, subtype)

    rows: list[dict] = []
    images: dict[int, str] = {}
    first: dict[int, int] = {}
    used: set[int] = set()
    spec = {"question_id": int, "image_id": int, "question": str}
    for i, entry in enumerate(questions):
        if type(entry) is _Question:  # the common case, without the generic checks
            qid, img, text, note = entry.question_id, entry.image_id, entry.question, None
        else:
            f, note = typed_fields(entry, spec)
            qid, img, text = f["question_id"], f["image_id"], f["question"]
        key = images.get(img)
        if key is None and img is not None and img >= 0:
            key = images[img] = key_format.format(img)
            rows.append({"record_id": f"{source}#image/{img}", "kind": IMAGE, "image_key": key})
        native = f"@{i}" if qid is None else f"{qid}@{i}" if qid in first else str(qid)
        text = text.strip() if isinstance(text, str) else None
        row = {"record_id": f"{source}#qa/{native}", "kind": QA, "image_key": key, "text": text or None}
        problem: tuple[str, str] | None = None
        if note:
            problem = ("invalid_record", note)
        elif qid is None:
            problem = ("invalid_record", "question_id is missing")
        elif img is None:
            problem = ("invalid_record", "image_id is missing")
        elif img < 0:
            problem = ("invalid_record", f"image_id {img} is negative")
        elif not text:
            problem = ("invalid_record", "question is missing or empty")
        elif qid in first:
            problem = ("duplicate_record_id", f"question_id {qid} repeats questions[{first[qid]}]")
        elif no_answer is not None:
            problem = no_answer
        elif qid not in joined:
            problem = ("invalid_record", f"no annotation for question_id {qid} in {ann_name}")
        else:
            used.add(qid)
            ann_img, answer, _ = joined[qid]
            if ann_img != img:
                problem = ("invalid_record", f"{ann_name} gives question {qid} image_id {ann_img}, the question {img}")
            elif answer is None:
                problem = ("invalid_record", f"{ann_name} gives question {qid} no answer")
            else:
                row["answer"] = answer
        if qid is not None and qid not in first:
            first[qid] = i
        if problem:
            row["reject_reason"], row["reject_detail"] = problem[0], problem[1][:_DETAIL_MAX]
        rows.append(row)

    for qid, (_, _, i) in joined.items():  # annotations of no question in this file
        if qid not in used and qid not in first:
            ann_bad.append((i, qid, "invalid_record", f"{ann_name} annotations[{i}]: no question with question_id {qid}"))
    for i, qid, reason, detail in sorted(ann_bad, key=lambda b: b[0]):
        native = f"@{i}" if qid is None else f"{qid}@{i}" if reason == "duplicate_record_id" else str(qid)
        rows.append({"record_id": f"{source}#annotation/{native}", "kind": INVALID,
                     "reject_reason": reason, "reject_detail": detail[:_DETAIL_MAX]})
    return to_source_records(rows).with_columns(source=pl.lit(source), source_format=pl.lit(FORMAT))


def _is_annotations(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return _ANNOTATIONS_LIST.search(head) is not None


LOADER = Loader(FORMAT, load_vqa, detect, companions, description="VQA v2 / v1 / OK-VQA questions + annotations JSON")

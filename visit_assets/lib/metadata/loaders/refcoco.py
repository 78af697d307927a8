"""RefCOCO / RefCOCO+ / RefCOCOg loader (format `refcoco`): a refs file, read with its COCO instances file.

The release (the refer toolkit's data zips refcoco.zip, refcoco+.zip, refcocog.zip) unpacks to one
folder per dataset:

    refcoco/   instances.json  refs(unc).p  refs(google).p
    refcoco+/  instances.json  refs(unc).p
    refcocog/  instances.json  refs(google).p  refs(umd).p

    refs(<split_by>).p   a pickled list of refs: [{"ref_id", "ann_id", "image_id", "category_id",
                         "split", "file_name", "sent_ids", "sentences": [{"sent_id", "sent",
                         "tokens", "raw"}]}]
    instances.json       COCO-style {"images": [{"id", "file_name", "height", "width"}],
                         "annotations": [{"id", "image_id", "bbox": [x, y, w, h], "category_id", ...}],
                         "categories": [...]}

These key names are the ones the refer toolkit (refer.py) reads; `file_name` of instances.json's
images is joined to the toolkit's `images/mscoco/images/train2014` folder, i.e. COCO 2014 file names
(`COCO_train2014_<12-digit id>.jpg`), the same keys the `coco` (2014) and `vqav2` loaders give.
The release publishes the refs only as a pickle; no JSON release with a documented layout was found.
Decision: both are read, with the same structure:
  * `refs(<split_by>).json`: the same list as JSON (what conversions of the pickle write), preferred;
  * `refs(<split_by>).p`: unpickled by a restricted unpickler that resolves no global at all, so
    only the pickle's own plain containers and scalars (list, dict, str, int, float, bool, None,
    tuple, bytes) can be built; anything naming a class or function (the way a malicious pickle
    runs code) is refused and the file becomes one `malformed_file` row. Python 2 pickles (the
    toolkit's era) have their byte strings read as UTF-8.
The ref's `file_name` (the image name with the annotation id appended) and `split` are not used.

The refs file is the source; instances.json in the same folder is its companion (registry.py). A
dataset folder scan takes `.p` files named `refs(<split_by>).p` only.
Rows (see ..records), refs in file order:
  * one "image" row per distinct image_id the refs name, `<source>#image/<image_id>`: image_key
    = instances.json's `file_name`, width/height from it; point `images:` in dataset.yaml at the
    folder holding COCO's images, under their 2014 or 2017 names (../coco_images.py resolves the
    key to the file on disk and merges the picture's records from other datasets);
  * one "box" row per sentence, `<source>#box/<sent_id>`: a referring expression names one object,
    so, as visual_genome does for region descriptions, it is a box labelled with the expression
    (`sent`, else `raw`; whitespace collapsed, first letter lower-cased unless an acronym, final
    period dropped), pixel box = the ref's annotation's `bbox`. An expression of more than 12 words
    is rejected `text_too_long` (it is not a label): RefCOCOg's long ones among them;
  * one "invalid" row `<source>#ref/<ref_id>` (or `@<index>`) per ref that is not an object or has
    no usable sentence list.
So rows == distinct image ids found in instances.json + sentences + refs without sentences.

Rejects, first match wins, on every sentence of a ref: invalid_record (ref_id, ann_id or image_id
missing or not an integer) > duplicate_record_id (ref_id seen before) > the companion's problem
(missing_companion when instances.json is absent; malformed_file / unknown_format when it is
unreadable) > unknown_image_id (image_id not in instances.json) > invalid_record (ann_id not in
instances.json, or its image is another, or its bbox is not 4 numbers) > per sentence:
invalid_record (not an object; no non-empty `sent` / `raw`), duplicate_record_id (sent_id seen
before: `<sent_id>@<ref index>.<n>`; a missing sent_id is `@<ref index>.<n>`), text_too_long,
box_out_of_bounds (non-positive width or height). A whole unreadable refs file is one
`<source>#file` row (malformed_file; unknown_format when it is not a list).
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any, TypeGuard

import msgspec
import polars as pl

from ..records import BOX, IMAGE, INVALID, to_source_records
from .common import (
    BadFile,
    as_size,
    file_reject,
    image_key_or_reject,
    json_bytes,
    nonempty_str,
    phrase_label,
    phrase_too_long,
)
from .registry import NO, SIGNATURE, Loader
from .vqa import json_type

FORMAT = "refcoco"
INSTANCES = "instances.json"
_DETAIL_MAX = 300
_NAME = re.compile(r"^refs\((?P<split_by>[A-Za-z0-9_-]+)\)\.(?P<ext>p|json)$")
_ANY = msgspec.json.Decoder()


# ------------------------------------------------------------------------------------------------
# files, detection, companions
# ------------------------------------------------------------------------------------------------


def scanned(path: Path) -> bool:
    """What a dataset folder scan takes: every .json, and of pickles only those named `refs(<split_by>).p`
    (a stray pickle is no source; a renamed refs pickle is named in dataset.yaml)."""
    return path.suffix != ".p" or _NAME.match(path.name) is not None


def companions(path: Path) -> list[Path]:
    return [Path(path).with_name(INSTANCES)]


def detect(path: Path, head: bytes) -> int:
    """2 for a refs file: `refs(<split_by>).p` / `.json` by name, or a JSON list / pickle whose
    first bytes carry a ref's keys; else 0. instances.json is COCO-shaped and left to coco's claim."""
    named = _NAME.match(path.name) is not None
    if path.suffix == ".p":
        return SIGNATURE if named or (head[:1] == b"\x80" and b"ref_id" in head and b"sentences" in head) else NO
    if path.suffix != ".json":
        return NO
    text = head[3:] if head[:3] == b"\xef\xbb\xbf" else head
    if text.lstrip()[:1] != b"[":
        return NO
    keys = (b'"ref_id"', b'"ann_id"', b'"sentences"')
    return SIGNATURE if all(k in text for k in keys) or (named and b'"ref_id"' in text) else NO


class _PlainOnly(pickle.Unpickler):
    """Builds a pickle's plain containers and scalars only: every global (class, function) is refused."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"the pickle names {module}.{name}; only plain lists, dicts, strings "
                                     "and numbers are read")


def read_refs(path: Path) -> list:
    """The list of refs of a `.p` (restricted unpickling) or `.json` refs file; raises BadFile."""
    if path.suffix == ".p":
        data = path.read_bytes()
        if not data.strip():
            raise BadFile("malformed_file", "the file is empty")
        try:
            refs = _PlainOnly(io.BytesIO(data), encoding="utf-8").load()
        except Exception as e:  # noqa: BLE001 - any failure of an untrusted pickle is the file's fault
            raise BadFile("malformed_file", f"not a plain pickle: {type(e).__name__}: {e}") from None
    else:
        try:
            refs = _ANY.decode(json_bytes(path))
        except msgspec.DecodeError as e:
            raise BadFile("malformed_file", f"invalid JSON: {e}") from None
    if not isinstance(refs, list):
        raise BadFile("unknown_format", f"the refs are {json_type(refs)}, not a list")
    return refs


def _instances(path: Path) -> tuple[dict, dict, tuple[str, str] | None]:
    """({image id: image entry}, {annotation id: annotation}, None), or ({}, {}, (reason, detail))."""
    inst = path.with_name(INSTANCES)
    if not inst.is_file():
        return {}, {}, ("missing_companion", f"{INSTANCES} not found beside the refs file")
    try:
        data = _ANY.decode(json_bytes(inst))
    except BadFile as e:
        return {}, {}, (e.reason, f"{INSTANCES}: {e.detail}")
    except msgspec.DecodeError as e:
        return {}, {}, ("malformed_file", f"{INSTANCES}: invalid JSON: {e}")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        return {}, {}, ("unknown_format", f"{INSTANCES} has no 'images' and 'annotations' lists")
    images = {e["id"]: e for e in data["images"] if isinstance(e, dict) and _is_int(e.get("id"))}
    anns = {a["id"]: a for a in data["annotations"] if isinstance(a, dict) and _is_int(a.get("id"))}
    return images, anns, None


def _is_int(v: Any) -> TypeGuard[int]:
    return type(v) is int


def _bbox(ann: dict) -> tuple[float, ...] | None:
    box = ann.get("bbox")
    if isinstance(box, list) and len(box) == 4 and all(type(v) in (int, float) for v in box):
        return tuple(float(v) for v in box)
    return None


def _ref_problem(ref: dict, first: dict, images: dict, anns: dict, companion: tuple[str, str] | None
                 ) -> tuple[str, str] | None:
    """The reason every sentence of the ref is rejected (module docstring), or None."""
    bad = [k for k in ("ref_id", "ann_id", "image_id") if not _is_int(ref.get(k))]
    if bad:
        return "invalid_record", f"{', '.join(bad)} missing or not an integer"
    if ref["ref_id"] in first:
        return "duplicate_record_id", f"ref_id {ref['ref_id']} repeats ref [{first[ref['ref_id']]}]"
    if companion is not None:
        return companion
    if ref["image_id"] not in images:
        return "unknown_image_id", f"image_id {ref['image_id']} is not in {INSTANCES}"
    ann = anns.get(ref["ann_id"])
    if ann is None:
        return "invalid_record", f"ann_id {ref['ann_id']} is not in {INSTANCES}"
    if ann.get("image_id") != ref["image_id"]:
        return "invalid_record", f"ann_id {ref['ann_id']} is of image {ann.get('image_id')}, the ref's {ref['image_id']}"
    if _bbox(ann) is None:
        return "invalid_record", f"ann_id {ref['ann_id']} has no bbox of 4 numbers"
    return None


def load_refcoco(path: Path, source: str) -> pl.DataFrame:
    """A refs file (+ instances.json) -> source records (module docstring). Bad data never raises;
    only an unreadable path (OSError) does."""
    path = Path(path)
    base = {"source": source, "source_format": FORMAT}
    try:
        refs = read_refs(path)
    except BadFile as e:
        return to_source_records([file_reject(source, FORMAT, e)])
    images, anns, companion = _instances(path)

    rows: list[dict] = []
    keys: dict[int, str | None] = {}
    first_ref: dict[int, int] = {}
    first_sent: dict[int, str] = {}
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict):
            rows.append({**base, "record_id": f"{source}#ref/@{i}", "kind": INVALID, "reject_reason": "invalid_record",
                         "reject_detail": f"ref [{i}] is {json_type(ref)}, not an object"})
            continue
        problem = _ref_problem(ref, first_ref, images, anns, companion)
        img = ref.get("image_id")
        if _is_int(img) and img in images and img not in keys:
            entry = images[img]
            row: dict[str, Any] = {**base, "record_id": f"{source}#image/{img}", "kind": IMAGE,
                   "width": as_size(entry.get("width")), "height": as_size(entry.get("height"))}
            if nonempty_str(entry.get("file_name")):
                image_key_or_reject(entry["file_name"], row)
            else:
                row["reject_reason"], row["reject_detail"] = "invalid_record", f"{INSTANCES} image {img} has no file_name"
            keys[img] = row.get("image_key")
            rows.append(row)
        key = keys.get(img) if _is_int(img) else None
        ref_native = str(ref["ref_id"]) if _is_int(ref.get("ref_id")) and ref["ref_id"] not in first_ref else f"@{i}"
        if _is_int(ref.get("ref_id")):
            first_ref.setdefault(ref["ref_id"], i)
        sentences = ref.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            rows.append({**base, "record_id": f"{source}#ref/{ref_native}", "kind": INVALID, "image_key": key,
                         "reject_reason": problem[0] if problem else "invalid_record",
                         "reject_detail": (problem[1] if problem else "sentences is missing, empty or not a list")})
            continue
        box = _bbox(anns[ref["ann_id"]]) if problem is None else None
        for n, sent in enumerate(sentences):
            rows.append(_sentence_row(base, source, i, n, sent, key, box, problem, first_sent))
    for r in rows:
        if r.get("reject_detail"):
            r["reject_detail"] = r["reject_detail"][:_DETAIL_MAX]
    return to_source_records(rows)


def _sentence_row(base: dict, source: str, i: int, n: int, sent: Any, key: str | None,
                  box: tuple[float, ...] | None, problem: tuple[str, str] | None, first: dict[int, str]) -> dict:
    sid = sent.get("sent_id") if isinstance(sent, dict) else None
    sid = sid if _is_int(sid) else None
    native = f"@{i}.{n}" if sid is None else f"{sid}@{i}.{n}" if sid in first else str(sid)
    row = {**base, "record_id": f"{source}#box/{native}", "kind": BOX, "image_key": key}
    text = None
    if isinstance(sent, dict):
        text = next((t for t in (sent.get("sent"), sent.get("raw")) if nonempty_str(t)), None)
    if text is not None:
        row["label"] = phrase_label(text)
    if box is not None:
        row.update(bbox_x=box[0], bbox_y=box[1], bbox_w=box[2], bbox_h=box[3], bbox_norm=False)
    if problem is None:
        if not isinstance(sent, dict):
            problem = ("invalid_record", f"sentence {n} is {json_type(sent)}, not an object")
        elif sid is not None and sid in first:
            problem = ("duplicate_record_id", f"sent_id {sid} repeats {first[sid]}")
        elif text is None:
            problem = ("invalid_record", f"sentence {n} has no non-empty sent or raw")
        elif too_long := phrase_too_long(row["label"], "referring expression"):
            problem = ("text_too_long", too_long)
        elif box is not None and (box[2] <= 0 or box[3] <= 0):  # (box: set when the ref has no problem)
            problem = ("box_out_of_bounds", f"box size {box[2]:g}x{box[3]:g} is not positive")
    if sid is not None:
        first.setdefault(sid, f"ref [{i}] sentence {n}")
    if problem:
        row["reject_reason"], row["reject_detail"] = problem
    return row


LOADER = Loader(FORMAT, load_refcoco, detect, companions,
                description="RefCOCO / RefCOCO+ / RefCOCOg refs (pickle or JSON) + COCO instances",
                suffixes=(".json", ".p"), scans=scanned)

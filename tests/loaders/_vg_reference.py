# REFERENCE ONLY (tests): the Visual Genome loader as it was before its columnar rewrite, kept verbatim
# (imports made absolute) so test_visual_genome_equality.py proves the new loader gives identical frames.
# ruff: noqa
"""Visual Genome (v1.2 / v1.4 release files) -> source records.

The release is a folder of JSON files, each a list with one entry per image:

  image_data.json           [{"width", "url", "height", "image_id", "coco_id", "flickr_id"}]
  objects.json              [{"image_id", "objects": [{"object_id", "x", "y", "w", "h", "names", ...}], ...}]
  region_descriptions.json  [{"regions": [{"region_id", "image_id", "phrase", "x", "y", "width", "height"}], "id"}]
  question_answers.json     [{"id", "qas": [{"qa_id", "image_id", "question", "answer", ...}]}]

A file's role comes from its first entry's keys (not its name), except that the image list is
always looked up as `image_data.json` beside the file. Other VG files (attributes, relationships,
scene graphs, region graphs) are not recognised, so they never count objects or regions twice.
Annotation files are decoded by msgspec into structs of the used fields only (synsets and the like
are skipped); a file whose structure does not fit is decoded again generically, same rows.

Records:
  image   one per image_data.json entry: image_key = the url's last two path parts ("VG_100K/1.jpg",
          "VG_100K_2/5.jpg": how the image zips unpack), width/height in pixels, and its `coco_id`
          (a non-negative integer, else null) in the record's coco_id column. A COCO picture's
          records (boxes and QA too: they share the key) then meet the COCO-family datasets'
          records of it in one image record, at the COCO file when the image folder has one, else
          at VG's file (../coco_images.py). Its boxes stay in VG's pixels: grouping normalises
          them by VG's own image size, not COCO's.
  box     one per object: label = its first name, pixel box x/y/w/h.
  box     one per region description. Our records have no region kind, so a region is a box whose
          label is its phrase (whitespace collapsed, first letter lower-cased unless the first word is
          an acronym, a final period dropped): the layout text then places the described region.
          A phrase of more than 12 words is rejected `text_too_long` (it is not a label).
  qa      one per question-answer pair.
Record ids: `<source>#image/<image_id>` (source = image_data.json's name), `<source>#box/<object_id>`,
`<source>#box/<region_id>`, `<source>#qa/<qa_id>`; a missing id is `@<entry>.<item>`, a repeated
one gets that position appended and is rejected `duplicate_record_id`. An entry that is not an
object or lacks its list is one `<source>#entry/@<index>` row (invalid_record).

Companion and counting: image_data.json is the companion of the other VG files in its folder
(keys and sizes come from it, and it is part of the dataset version), so read_layout does not load
it on its own when one of them is a source. Its entries must still become rows exactly once: the
*first* annotation file of the folder (by name: objects.json < question_answers.json <
region_descriptions.json) emits them, under image_data.json's source name. When no annotation
file is beside it, image_data.json is a source and loaded alone yields the image records only.
(If dataset.yaml lists a later annotation file but not the first one, no image records are made:
boxes are then sized from the image files.)

Rejects: image_data.json absent or unreadable -> every annotation `missing_companion`; an image id
not in image_data.json -> unknown_image_id; an image entry that was itself rejected -> its reason;
non-positive box size -> box_out_of_bounds; missing or ill-typed fields -> invalid_record.
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import msgspec
import polars as pl

from visit_assets.lib.metadata.records import BOX, IMAGE, INVALID, QA, SOURCE_RECORD_SCHEMA, to_source_records
from visit_assets.lib.metadata.loaders.common import MAX_PHRASE_WORDS, BadFile, file_reject, image_key_or_reject, phrase_label, read_json
from visit_assets.lib.metadata.loaders.registry import NO, SIGNATURE, Loader

FORMAT = "visual_genome"
IMAGE_DATA = "image_data.json"
OBJECTS, REGIONS, QAS, IMAGES = "objects", "regions", "qas", "image_data"
ANNOTATION_ROLES = (OBJECTS, REGIONS, QAS)
_HEAD = 1 << 16
_DETAIL = 200


# ------------------------------------------------------------------------------------------------
# roles and detection
# ------------------------------------------------------------------------------------------------


def role_of_entry(entry: object) -> str | None:
    """The file role an entry's keys say: objects / regions / qas / image_data, or None."""
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("qas"), list):
        return QAS
    regions = entry.get("regions")
    if isinstance(regions, list):
        first = regions[0] if regions else {"phrase": None}  # region graphs' regions also have phrases:
        ok = isinstance(first, dict) and "phrase" in first and "relationships" not in first  # and relationships
        return REGIONS if ok else None
    objects = entry.get("objects")
    if isinstance(objects, list) and "relationships" not in entry:  # scene graphs also list objects
        return OBJECTS if not objects or (isinstance(objects[0], dict) and "names" in objects[0]) else None
    if "url" in entry and "width" in entry and "height" in entry and ("image_id" in entry or "id" in entry):
        return IMAGES
    return None


_OPENS = {  # when the first entry does not fit in the head: it opens with its role's list
    QAS: (re.compile(rb'^\s*\{[^\[\]]*"qas"\s*:\s*\['), b'"question"'),
    REGIONS: (re.compile(rb'^\s*\{[^\[\]]*"regions"\s*:\s*\[\s*\{'), b'"phrase"'),
    OBJECTS: (re.compile(rb'^\s*\{[^\[\]]*"objects"\s*:\s*\[\s*\{'), b'"names"'),
}


def role_of_head(head: bytes) -> str | None:
    """Role of a file from its first bytes: a JSON list whose first entry names it."""
    text = head[3:] if head[:3] == codecs.BOM_UTF8 else head
    text = text.lstrip()
    if text[:1] != b"[":
        return None
    try:
        entry, _ = json.JSONDecoder().raw_decode(text[1:].decode("utf-8", "ignore").lstrip())
    except ValueError:  # the first entry runs past the head
        rest = text[1:]
        for role, (opens, needs) in _OPENS.items():
            if opens.search(rest) and needs in rest and b'"relationships"' not in rest:
                return role
        return None
    return role_of_entry(entry)


def detect(path: Path, head: bytes) -> int:
    """Signature (2) for any VG file this loader reads, else 0."""
    return SIGNATURE if path.suffix == ".json" and role_of_head(head) else NO


def companions(path: Path) -> list[Path]:
    """image_data.json beside an annotation file (the registry keeps only existing files)."""
    return [] if path.name == IMAGE_DATA else [path.parent / IMAGE_DATA]


def _file_role(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return role_of_head(f.read(_HEAD))
    except OSError:
        return None


def image_records_owner(folder: Path) -> Path | None:
    """The annotation file that emits image_data.json's records: the first by name in the folder."""
    for p in sorted(folder.glob("*.json")):
        if p.name != IMAGE_DATA and p.is_file() and _file_role(p) in ANNOTATION_ROLES:
            return p
    return None


# ------------------------------------------------------------------------------------------------
# decoding: annotation files are decoded by msgspec into structs holding only the fields used
# (synsets, merged ids and the like are skipped); a file whose structure does not fit is decoded
# again generically, and its odd entries become reject rows.
# ------------------------------------------------------------------------------------------------


class _Item(msgspec.Struct, gc=False):
    object_id: Any = None
    region_id: Any = None
    qa_id: Any = None
    image_id: Any = None
    x: Any = None
    y: Any = None
    w: Any = None
    h: Any = None
    width: Any = None
    height: Any = None
    names: Any = None
    phrase: Any = None
    question: Any = None
    answer: Any = None
    relationships: msgspec.Raw | None = None  # only region graphs' regions have it: never read

    def get(self, key: str) -> Any:
        return getattr(self, key, None)


class _Entry(msgspec.Struct, gc=False):
    image_id: Any = None
    id: Any = None
    objects: list[_Item] | None = None
    regions: list[_Item] | None = None
    qas: list[_Item] | None = None
    relationships: msgspec.Raw | None = None  # only scene graphs have it: never read

    def get(self, key: str) -> Any:
        return getattr(self, key, None)


_ENTRIES = msgspec.json.Decoder(list[_Entry])


def _struct_role(entry: _Entry) -> str | None:
    if entry.qas is not None:
        return QAS
    if entry.regions is not None:
        first = entry.regions[0] if entry.regions else None
        return REGIONS if first is None or (first.phrase is not None and first.relationships is None) else None
    if entry.objects is not None and entry.relationships is None:
        return OBJECTS if not entry.objects or entry.objects[0].names is not None else None
    return None


def _read_entries(path: Path) -> tuple[list, str | None]:
    """(the file's entries, its role); raises BadFile when it is not a readable JSON list."""
    try:
        entries = _ENTRIES.decode(path.read_bytes())
    except msgspec.MsgspecError:  # ill-typed entries, bad JSON, a BOM: the generic path says what is wrong
        entries = None
    if entries:
        role = next((r for r in map(_struct_role, entries) if r), None)
        if role is not None:
            return entries, role
    entries = None
    data = _read_list(path)
    return data, next((r for r in map(role_of_entry, data) if r), None)


# ------------------------------------------------------------------------------------------------
# rows
# ------------------------------------------------------------------------------------------------


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _short(text: str) -> str:
    return text if len(text) <= _DETAIL else text[: _DETAIL - 3] + "..."


def _reject(row: dict, reason: str, detail: str) -> dict:
    if not row.get("reject_reason"):
        row["reject_reason"], row["reject_detail"] = reason, _short(detail)
    return row


class _Columns:
    """Rows appended as dicts but kept as one list per column: millions of annotations stay compact."""

    def __init__(self):
        self.columns: dict[str, list] = {c: [] for c in SOURCE_RECORD_SCHEMA}
        self._adders = [(name, values.append) for name, values in self.columns.items()]

    def append(self, row: dict) -> None:
        get = row.get
        for name, add in self._adders:
            add(get(name))

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.columns, schema=SOURCE_RECORD_SCHEMA, strict=False)


def image_key_from_url(url: str) -> str:
    """`https://.../VG_100K_2/1.jpg` -> `VG_100K_2/1.jpg` (the url's last two path parts)."""
    parts = [p for p in urlparse(url.strip()).path.split("/") if p]
    return "/".join(parts[-2:])


class _Images:
    """image_data.json as image rows plus an image_id -> (key, reject) lookup."""

    def __init__(self, rows: list[dict], lookup: dict[int, dict]):
        self.rows, self.lookup = rows, lookup


def _size(entry: dict, name: str, row: dict) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or not float(value).is_integer():
        _reject(row, "invalid_record", f"{name} {value!r} is not a positive integer")
        return None
    return int(value)


def _image_rows(data: list, source: str) -> _Images:
    base = {"source": source, "source_format": FORMAT, "kind": IMAGE}
    rows: list[dict] = []
    lookup: dict[int, dict] = {}
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            rows.append(_reject({**base, "record_id": f"{source}#image/@{index}"}, "invalid_record",
                                "entry is not an object"))
            continue
        image_id = _int(entry.get("image_id", entry.get("id")))
        native = str(image_id) if image_id is not None else f"@{index}"
        if image_id is not None and image_id in lookup:
            native = f"{image_id}@{index}"
        row: dict[str, Any] = {**base, "record_id": f"{source}#image/{native}"}
        url = entry.get("url")
        if image_id is None:
            _reject(row, "invalid_record", "image_id is missing or not an integer")
        if not isinstance(url, str) or not url.strip():
            _reject(row, "invalid_record", "url is missing or not a string")
        row["width"], row["height"] = _size(entry, "width", row), _size(entry, "height", row)
        coco_id = _int(entry.get("coco_id"))  # null for most VG images; a bad one is just not used
        row["coco_id"] = coco_id if coco_id is not None and coco_id >= 0 else None
        if image_id is not None and image_id in lookup:
            _reject(row, "duplicate_record_id", f"image_id {image_id} repeats an earlier entry")
        if not row.get("reject_reason") and isinstance(url, str):  # (a str when nothing was rejected)
            image_key_or_reject(image_key_from_url(url), row)
        rows.append(row)
        if image_id is not None and image_id not in lookup:
            lookup[image_id] = row
    return _Images(rows, lookup)


def _bad_entry(source: str, index: int, detail: str) -> dict:
    return {"source": source, "source_format": FORMAT, "record_id": f"{source}#entry/@{index}", "kind": INVALID,
            "reject_reason": "invalid_record", "reject_detail": detail}


def _box(row: dict, item: dict | _Item, keys: tuple[str, str, str, str]) -> None:
    values = [_num(item.get(k)) for k in keys]
    bad = [k for k, v in zip(keys, values, strict=True) if v is None]
    if bad:
        _reject(row, "invalid_record", f"{', '.join(bad)} missing or not numbers")
        return
    row.update(bbox_x=values[0], bbox_y=values[1], bbox_w=values[2], bbox_h=values[3], bbox_norm=False)
    w, h = values[2], values[3]
    assert w is not None and h is not None  # (bad is empty)
    if w <= 0 or h <= 0:
        _reject(row, "box_out_of_bounds", f"box size {w:g}x{h:g} is not positive")


def _fill(row: dict, role: str, item: dict | _Item) -> None:
    """Kind-specific fields and checks of one annotation item."""
    if role == OBJECTS:
        names = item.get("names")
        if not isinstance(names, list) or not names or not isinstance(names[0], str) or not names[0].strip():
            _reject(row, "invalid_record", "names is missing, empty or not a list of strings")
        else:
            row["label"] = " ".join(names[0].split())
        _box(row, item, ("x", "y", "w", "h"))
    elif role == REGIONS:
        phrase = item.get("phrase")
        if not isinstance(phrase, str) or not phrase.strip():
            _reject(row, "invalid_record", "phrase is missing or not a non-empty string")
        else:
            row["label"] = phrase_label(phrase)
            n_words = len(row["label"].split())
            if n_words > MAX_PHRASE_WORDS:
                _reject(row, "text_too_long", f"region phrase has {n_words} words (over {MAX_PHRASE_WORDS})")
        _box(row, item, ("x", "y", "width", "height"))
    else:
        q, a = item.get("question"), item.get("answer")
        if not isinstance(q, str) or not q.strip() or not isinstance(a, str) or not a.strip():
            _reject(row, "invalid_record", "question or answer is missing or not a non-empty string")
        else:
            row["text"], row["answer"] = " ".join(q.split()), " ".join(a.split())


_LIST_KEY = {OBJECTS: "objects", REGIONS: "regions", QAS: "qas"}
_ITEM_ID = {OBJECTS: "object_id", REGIONS: "region_id", QAS: "qa_id"}


def _annotation_rows(data: list, source: str, role: str, images: _Images | None, companion_problem: str) -> _Columns:
    kind = QA if role == QAS else BOX
    list_key, id_key = _LIST_KEY[role], _ITEM_ID[role]
    rows = _Columns()
    seen: set[int] = set()
    for index, entry in enumerate(data):
        if not isinstance(entry, (dict, _Entry)):
            rows.append(_bad_entry(source, index, "entry is not an object"))
            continue
        items = entry.get(list_key)
        if not isinstance(items, list):
            rows.append(_bad_entry(source, index, f"entry has no '{list_key}' list"))
            continue
        entry_image = _int(entry.get("image_id"))
        entry_image = entry_image if entry_image is not None else _int(entry.get("id"))
        for j, item in enumerate(items):
            row: dict[str, Any] = {"source": source, "source_format": FORMAT, "kind": kind}
            if not isinstance(item, (dict, _Item)):
                row["record_id"] = f"{source}#{kind}/@{index}.{j}"
                rows.append(_reject(row, "invalid_record", f"{list_key}[{j}] is not an object"))
                continue
            native_id = _int(item.get(id_key))
            if native_id is None:
                row["record_id"] = f"{source}#{kind}/@{index}.{j}"
                _reject(row, "invalid_record", f"{id_key} is missing or not an integer")
            elif native_id in seen:
                row["record_id"] = f"{source}#{kind}/{native_id}@{index}.{j}"
            else:
                row["record_id"] = f"{source}#{kind}/{native_id}"
            item_image = _int(item.get("image_id"))
            image_id = entry_image if entry_image is not None else item_image
            if image_id is None:
                _reject(row, "invalid_record", "image_id is missing or not an integer")
            elif item_image is not None and item_image != image_id:
                _reject(row, "invalid_record", f"item image_id {item_image} differs from its entry's {image_id}")
            _fill(row, role, item)
            if native_id is not None and native_id in seen:
                _reject(row, "duplicate_record_id", f"{id_key} {native_id} repeats an earlier one")
            if native_id is not None:
                seen.add(native_id)
            if images is None:
                _reject(row, "missing_companion", companion_problem)
            elif image_id is not None:
                image = images.lookup.get(image_id)
                if image is None:
                    _reject(row, "unknown_image_id", f"image_id {image_id} is not in {IMAGE_DATA}")
                else:
                    row["image_key"] = image.get("image_key")
                    if image.get("reject_reason"):
                        _reject(row, image["reject_reason"], f"image {image_id} rejected: {image.get('reject_detail')}")
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------------
# loading
# ------------------------------------------------------------------------------------------------


def _read_list(path: Path) -> list:
    data = read_json(path)
    if not isinstance(data, list):
        raise BadFile("unknown_format", "a Visual Genome file is a JSON list with one entry per image")
    return data


def _companion_source(source: str) -> str:
    return PurePosixPath(source).with_name(IMAGE_DATA).as_posix()


def _companion_images(path: Path, source: str, emits_images: bool) -> tuple[_Images | None, str, list[dict]]:
    """image_data.json beside `path`: (its image rows and lookup or None, why not, rows to emit)."""
    companion = path.parent / IMAGE_DATA
    if not companion.is_file():
        return None, f"{IMAGE_DATA} (image keys and sizes) is not beside {path.name}", []
    try:
        images = _image_rows(_read_list(companion), _companion_source(source))
    except BadFile as e:
        rows = [file_reject(_companion_source(source), FORMAT, e)] if emits_images else []
        return None, f"{IMAGE_DATA} is unusable: {e.detail}", rows
    return images, "", images.rows if emits_images else []


def load_visual_genome(path: Path, source: str) -> pl.DataFrame:
    """One VG file -> source records (module docstring). Bad data never raises."""
    path = Path(path)
    owner = None if path.name == IMAGE_DATA else image_records_owner(path.parent)
    emits_images = owner is not None and owner.name == path.name
    try:
        data, role = _read_entries(path)
    except BadFile as e:  # the image records are still owed if this file was to emit them
        own = _companion_images(path, source, emits_images)[2]
        return to_source_records([*own, file_reject(source, FORMAT, e)])
    if not data:
        return to_source_records([])
    if role is None:
        return to_source_records([file_reject(source, FORMAT, BadFile(
            "unknown_format", "no entry has 'objects' with names, 'regions' with phrases, 'qas' or image data"))])
    if role == IMAGES:
        return to_source_records(_image_rows(data, source).rows)
    images, problem, rows = _companion_images(path, source, emits_images)
    columns = _annotation_rows(data, source, role, images, problem)
    del data
    annotations = columns.frame()
    return pl.concat([to_source_records(rows), annotations], how="vertical") if rows else annotations

LOADER = Loader(FORMAT, load_visual_genome, detect, companions,
                description="Visual Genome objects / region descriptions / QA JSON, with image_data.json")

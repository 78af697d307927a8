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
from itertools import chain
from operator import attrgetter
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import msgspec
import numpy as np
import polars as pl

from ..records import BOX, IMAGE, INVALID, QA, SOURCE_RECORD_SCHEMA, empty_source_records, to_source_records
from .common import MAX_PHRASE_WORDS, BadFile, file_reject, image_key_or_reject, phrase_label, read_json
from .registry import NO, SIGNATURE, Loader

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


# A url whose path is plain segments: urlparse's path is then everything after the host, so its
# last two parts are the url's own (anything else goes through urlparse).
_PLAIN_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[A-Za-z0-9_.-]+){2,}")


def image_key_from_url(url: str) -> str:
    """`https://.../VG_100K_2/1.jpg` -> `VG_100K_2/1.jpg` (the url's last two path parts)."""
    if _PLAIN_URL.fullmatch(url):
        return "/".join(url.rsplit("/", 2)[-2:])
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


# ------------------------------------------------------------------------------------------------
# annotation rows, column by column: millions of regions are checked as polars expressions rather
# than in a Python loop; the text rules run in Python once per distinct string (phrases repeat).
# ------------------------------------------------------------------------------------------------

_LIST_KEY = {OBJECTS: "objects", REGIONS: "regions", QAS: "qas"}
_ITEM_ID = {OBJECTS: "object_id", REGIONS: "region_id", QAS: "qa_id"}
_BOX_KEYS = {OBJECTS: ("x", "y", "w", "h"), REGIONS: ("x", "y", "width", "height")}
_NOT_ENTRY = object()  # the one row of an entry that is not an object or lacks its list
_JSON_INTS = {int, type(None)}
_JSON_NUMBERS = {int, float, type(None)}


def _entry_image(entry: dict | _Entry) -> int | None:
    image = _int(entry.get("image_id"))
    return image if image is not None else _int(entry.get("id"))


class _Flat:
    """An annotation file's items in file order, one per row, with each row's entry index and item
    position; an entry that is not an object or has no list holds one placeholder row."""

    def __init__(self, data: list, list_key: str):
        self.problems: list[str | None] = []  # per entry: why it has no items
        self.entry_images: list[int | None] = []
        lists: list = []
        for entry in data:
            items = entry.get(list_key) if isinstance(entry, (dict, _Entry)) else None
            problem = ("entry is not an object" if not isinstance(entry, (dict, _Entry)) else
                       None if isinstance(items, list) else f"entry has no '{list_key}' list")
            self.problems.append(problem)
            self.entry_images.append(None if problem else _entry_image(entry))
            lists.append((_NOT_ENTRY,) if problem else items)
        lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        self.entry = np.repeat(np.arange(len(lists), dtype=np.int64), lengths)
        self.position = np.arange(len(self.entry), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        self.items = list(chain.from_iterable(lists))
        self.structs = all(type(item) is _Item for item in self.items)  # the typed decode: no placeholders

    def field(self, key: str) -> list:
        """One field of every row's item (None where absent or the row has no item object)."""
        if self.structs:
            return list(map(attrgetter(key), self.items))
        return [item.get(key) if isinstance(item, (dict, _Item)) else None for item in self.items]

    def release(self) -> None:
        """Drop the items once their fields are columns: the decoded file is then freed."""
        self.items = []

    def is_object(self) -> list[bool]:
        return [isinstance(item, (dict, _Item)) for item in self.items]


def _ints(values: list) -> list:
    """_int of each value (the list itself when every value already is an int or None)."""
    return values if set(map(type, values)) <= _JSON_INTS else [_int(v) for v in values]


def _numbers(values: list) -> pl.Series:
    """_num of each value as a Float64 column."""
    if not set(map(type, values)) <= _JSON_NUMBERS:
        values = [_num(v) for v in values]
    return pl.Series(values, dtype=pl.Float64)


def _id_columns(columns: dict[str, list]) -> dict[str, pl.Series]:
    """Integer id lists as columns compared with each other: Int64, or (ids past int64) all as their
    decimal strings, which compare and print the same."""
    try:
        return {name: pl.Series(name, values, dtype=pl.Int64) for name, values in columns.items()}
    except (TypeError, OverflowError):
        return {name: pl.Series(name, [None if v is None else str(v) for v in values], dtype=pl.String)
                for name, values in columns.items()}


def _distinct(values: list) -> tuple[pl.Series, list[str]]:
    """The string values as a column (other values null) and its distinct strings: the text rules
    run once per distinct string (polars finds them), not once per row."""
    try:  # strict: any other value raises, and only then is the list filtered
        column = pl.Series("v", values, dtype=pl.String)
    except TypeError:
        column = pl.Series("v", [v if type(v) is str else None for v in values], dtype=pl.String)
    return column, column.drop_nulls().unique().to_list()


def _mapped(column: pl.Series, keys: list[str], results: dict[str, pl.Series]) -> dict[str, pl.Series]:
    """Each row's results, looked up by its string (null for a null string)."""
    table = pl.DataFrame({"v": pl.Series(keys, dtype=pl.String), **results})
    joined = column.to_frame().join(table, on="v", how="left", maintain_order="left")
    return {name: joined[name] for name in results}


def _collapsed(text: str) -> str | None:
    """A name, question or answer with its whitespace collapsed; None when blank."""
    return " ".join(text.split()) if text.strip() else None


def _region_label(phrase: str) -> str | None:
    """A region's label; None when the phrase is blank."""
    return phrase_label(phrase) if phrase.strip() else None


def _n_words(label: str | None) -> int | None:
    return None if label is None else len(label.split())


def _first_name(names: object) -> object:
    return names[0] if isinstance(names, list) and names else None


def _size_detail(w: float, h: float) -> str:
    return f"box size {w:g}x{h:g} is not positive"


def _text_columns(flat: _Flat, role: str) -> dict[str, pl.Series]:
    """label (+ its word count) or text/answer: null where the reject rule says invalid."""
    if role == OBJECTS:
        column, keys = _distinct(list(map(_first_name, flat.field("names"))))
        return _mapped(column, keys, {"label": pl.Series(list(map(_collapsed, keys)), dtype=pl.String)})
    if role == REGIONS:
        column, keys = _distinct(flat.field("phrase"))
        labels = list(map(_region_label, keys))
        return _mapped(column, keys, {"label": pl.Series(labels, dtype=pl.String),
                                      "n_words": pl.Series(list(map(_n_words, labels)), dtype=pl.Int64)})
    texts = []
    for name in ("question", "answer"):
        column, keys = _distinct(flat.field(name))
        texts.append(_mapped(column, keys, {"t": pl.Series(list(map(_collapsed, keys)), dtype=pl.String)})["t"])
    both = texts[0].is_not_null() & texts[1].is_not_null()  # either one bad: neither is kept
    none = pl.Series([None], dtype=pl.String)
    return {"text": texts[0].zip_with(both, none), "answer": texts[1].zip_with(both, none)}


def _box_columns(flat: _Flat, role: str) -> dict[str, pl.Series]:
    """The four box numbers, and the size detail of the complete boxes that are not positive."""
    x, y, w, h = (_numbers(flat.field(k)) for k in _BOX_KEYS[role])
    bad = (x.is_not_null() & y.is_not_null() & w.is_not_null() & h.is_not_null() & ((w <= 0) | (h <= 0)))
    where = bad.arg_true()
    details = [_size_detail(a, b) for a, b in zip(w.gather(where).to_list(), h.gather(where).to_list(), strict=True)]
    size = pl.Series([None] * len(x), dtype=pl.String).scatter(where, pl.Series(details, dtype=pl.String))
    return {"x": x, "y": y, "w": w, "h": h, "size_detail": size}


def _rows_frame(flat: _Flat, role: str, lookup: dict | None) -> pl.DataFrame:
    """The raw columns of every row: entry/position, ids, texts, box numbers, entry problems."""
    entry = pl.Series("e", flat.entry)
    ids = _id_columns({"nid": _ints(flat.field(_ITEM_ID[role])), "item_image": _ints(flat.field("image_id")),
                       "entry_image": flat.entry_images, "lookup_id": list(lookup or ())})
    columns: dict[str, pl.Series] = {
        "e": entry, "j": pl.Series(flat.position),
        "is_object": pl.Series(flat.is_object(), dtype=pl.Boolean) if not flat.structs else pl.repeat(
            True, len(entry), eager=True),
        "problem": pl.Series(flat.problems, dtype=pl.String).gather(entry),
        "nid": ids["nid"], "item_image": ids["item_image"], "entry_image": ids["entry_image"].gather(entry),
        **_text_columns(flat, role), **(_box_columns(flat, role) if role in _BOX_KEYS else {}),
    }
    flat.release()
    frame = pl.DataFrame(columns)
    if lookup is None:
        return frame
    images = pl.DataFrame({"lookup_id": ids["lookup_id"],
                           "img_key": [row.get("image_key") for row in lookup.values()],
                           "img_reason": [row.get("reject_reason") or None for row in lookup.values()],
                           "img_detail": [row.get("reject_detail") for row in lookup.values()]},
                          schema_overrides={"img_key": pl.String, "img_reason": pl.String, "img_detail": pl.String})
    frame = frame.with_columns(image_id=pl.coalesce("entry_image", "item_image"))
    return frame.join(images.with_columns(found=pl.lit(True)), left_on="image_id", right_on="lookup_id",
                      how="left", maintain_order="left")


def _text(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.String)


_Check = tuple[pl.Expr, str | pl.Expr, pl.Expr]  # (condition, reason, detail)


def _checks(role: str, id_key: str, list_key: str, has_images: bool, problem: str) -> list[_Check]:
    """The checks in the order the row-by-row loader applied them: the first that holds is the row's."""
    c = pl.col
    image_id = pl.coalesce("entry_image", "item_image")
    checks: list[_Check] = [
        (c("problem").is_not_null(), "invalid_record", c("problem")),
        (~c("is_object"), "invalid_record",
         pl.concat_str(pl.lit(f"{list_key}["), _text(c("j")), pl.lit("] is not an object"))),
        (c("nid").is_null(), "invalid_record", pl.lit(f"{id_key} is missing or not an integer")),
        (image_id.is_null(), "invalid_record", pl.lit("image_id is missing or not an integer")),
        (c("item_image").is_not_null() & (c("item_image") != image_id), "invalid_record",
         pl.concat_str(pl.lit("item image_id "), _text(c("item_image")), pl.lit(" differs from its entry's "),
                       _text(image_id))),
    ]
    if role == OBJECTS:
        checks.append((c("label").is_null(), "invalid_record", pl.lit("names is missing, empty or not a list of strings")))
    elif role == REGIONS:
        checks += [(c("label").is_null(), "invalid_record", pl.lit("phrase is missing or not a non-empty string")),
                   (c("n_words") > MAX_PHRASE_WORDS, "text_too_long", pl.concat_str(
                       pl.lit("region phrase has "), _text(c("n_words")), pl.lit(f" words (over {MAX_PHRASE_WORDS})")))]
    else:
        checks.append((c("text").is_null(), "invalid_record",
                       pl.lit("question or answer is missing or not a non-empty string")))
    if role in _BOX_KEYS:
        keys = _BOX_KEYS[role]
        missing = [pl.when(c(col).is_null()).then(pl.lit(k)) for col, k in zip("xywh", keys, strict=True)]
        checks += [(pl.any_horizontal(*(c(col).is_null() for col in "xywh")), "invalid_record",
                    pl.concat_str(*missing, separator=", ", ignore_nulls=True) + pl.lit(" missing or not numbers")),
                   (c("size_detail").is_not_null(), "box_out_of_bounds", c("size_detail"))]
    checks.append((c("nid").is_not_null() & ~c("nid").is_first_distinct(), "duplicate_record_id",
                   pl.concat_str(pl.lit(f"{id_key} "), _text(c("nid")), pl.lit(" repeats an earlier one"))))
    if not has_images:
        checks.append((pl.lit(True), "missing_companion", pl.lit(problem)))
    else:
        checks += [(image_id.is_not_null() & c("found").is_null(), "unknown_image_id",
                    pl.concat_str(pl.lit("image_id "), _text(image_id), pl.lit(f" is not in {IMAGE_DATA}"))),
                   (c("img_reason").is_not_null(), c("img_reason"),
                    pl.concat_str(pl.lit("image "), _text(image_id), pl.lit(" rejected: "),
                                  c("img_detail").fill_null("None")))]
    return checks


def _short_expr(detail: pl.Expr) -> pl.Expr:
    """_short as an expression."""
    return pl.when(detail.str.len_chars() > _DETAIL).then(detail.str.slice(0, _DETAIL - 3) + pl.lit("...")).otherwise(detail)


def _annotation_rows(flat: _Flat, source: str, role: str, images: _Images | None, companion_problem: str) -> pl.DataFrame:
    kind = QA if role == QAS else BOX
    list_key, id_key = _LIST_KEY[role], _ITEM_ID[role]
    frame = _rows_frame(flat, role, None if images is None else images.lookup)
    if frame.height == 0:
        return empty_source_records()
    c = pl.col
    checks = _checks(role, id_key, list_key, images is not None, companion_problem)
    reason = pl.coalesce(*(pl.when(cond).then(r if isinstance(r, pl.Expr) else pl.lit(r)) for cond, r, _ in checks))
    detail = pl.coalesce(*(pl.when(cond).then(d) for cond, _, d in checks))
    at = pl.concat_str(pl.lit("@"), _text(c("e")), pl.lit("."), _text(c("j")))
    dup = c("nid").is_not_null() & ~c("nid").is_first_distinct()
    record_id = (pl.when(c("problem").is_not_null()).then(pl.concat_str(pl.lit(f"{source}#entry/@"), _text(c("e"))))
                 .when(~c("is_object") | c("nid").is_null()).then(pl.lit(f"{source}#{kind}/") + at)
                 .when(dup).then(pl.concat_str(pl.lit(f"{source}#{kind}/"), _text(c("nid")), at))
                 .otherwise(pl.concat_str(pl.lit(f"{source}#{kind}/"), _text(c("nid")))))
    values: dict[str, pl.Expr] = {
        "source": pl.lit(source), "source_format": pl.lit(FORMAT), "record_id": record_id,
        "kind": pl.when(c("problem").is_not_null()).then(pl.lit(INVALID)).otherwise(pl.lit(kind)),
        "reject_reason": reason, "reject_detail": _short_expr(detail),
    }
    if images is not None:
        values["image_key"] = pl.when(c("is_object")).then(c("img_key"))  # (placeholders have no image)
    if role == QAS:
        values.update(text=c("text"), answer=c("answer"))
    else:
        box = pl.all_horizontal(*(c(col).is_not_null() for col in "xywh"))  # a partial box sets no number
        values["label"] = c("label")
        values.update({f"bbox_{col}": pl.when(box).then(c(col)) for col in "xywh"})
        values["bbox_norm"] = pl.when(box).then(pl.lit(False))
    return frame.select(**{name: values.get(name, pl.lit(None)).cast(dtype)
                           for name, dtype in SOURCE_RECORD_SCHEMA.items()})


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
    flat = _Flat(data, _LIST_KEY[role])
    del data  # (the items alone hold the decoded structs, until they are columns)
    annotations = _annotation_rows(flat, source, role, images, problem)
    return pl.concat([to_source_records(rows), annotations], how="vertical") if rows else annotations

LOADER = Loader(FORMAT, load_visual_genome, detect, companions,
                description="Visual Genome objects / region descriptions / QA JSON, with image_data.json")

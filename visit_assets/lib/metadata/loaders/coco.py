"""COCO loader: one COCO-style JSON file (captions or instances) -> source records.

Rows (see records.py): one per `images` entry (kind "image") and one per `annotations` entry
(kind "caption" when it has a caption, else "box" when it has a bbox, else "invalid"), in file
order. A file that cannot be read as COCO becomes one kind="invalid" row `"<source>#file"`.
An image's key is its `file_name`; a COCO-named one (`COCO_train2014_<id>.jpg`, `<id>.jpg`) is then
resolved to the picture's file under whichever COCO naming the image folder holds, and meets the
other datasets' records of that picture (../coco_images.py).

Record ids are `"<source>#image/<id>"`, `"<source>#caption/<id>"`, `"<source>#box/<id>"`
(`"<source>#annotation/<id>"` for an annotation that is neither); an entry without a usable
integer id uses its list position instead, as `@<index>` (e.g. `"<source>#image/@17"`), and a
repeated id gets its position appended (`"<source>#image/5@17"`), so record ids are unique.

Rules, checked vectorised in polars, first match wins:
  images       invalid_record (not an object; id, file_name missing/ill-typed; width or height
               present but not a positive integer -- absent ones stay null = unknown)
               > duplicate_record_id (same id earlier in the list)
               > unsafe_path (the rules of paths.normalise_image_key: empty, absolute, drive
               letter, NUL, or leaving the folder via ".."; such rows have a null image_key)
  annotations  invalid_record (not an object, ill-typed fields, no id/image_id, neither caption
               nor bbox, bbox not 4 numbers) > duplicate_record_id (same annotation id earlier)
               > unknown_image_id > the image's own reason if its (first) entry was rejected
               > invalid_record for a box whose category_id is missing or not in `categories`.
An annotation with both a caption and a bbox is a caption. Segmentations are never decoded.

Speed: the file is read once into memory and decoded by msgspec straight into typed structs that
declare only the fields used, so segmentation polygons (most of an instances file) are validated
and skipped without ever becoming Python objects. When a record's types do not fit (a string id,
an entry that is not an object), the file is decoded again entry by entry: well-typed entries go
through the same typed decoder, the odd ones are decoded generically and coerced, with a note that
becomes their reject detail. Files that are not UTF-8 or not JSON are never partially loaded.
"""

from __future__ import annotations

import codecs
import gc
import pathlib
import re
from operator import attrgetter
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa

from ..records import BOX, CAPTION, IMAGE, INVALID, SOURCE_RECORD_SCHEMA, to_source_records

SOURCE_FORMAT = "coco"
_DETAIL_MAX = 200  # reject_detail is short; long paths/snippets are cut to this


# ------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------
# gc=False: these structs hold no reference cycles; not tracking ~1M of them keeps the cyclic GC
# from rescanning the heap over and over while the file is decoded.


class _Image(msgspec.Struct, gc=False):
    id: int | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None


class _Annotation(msgspec.Struct, gc=False):
    id: int | None = None
    image_id: int | None = None
    category_id: int | None = None
    bbox: list[float] | None = None
    caption: str | None = None


class _Category(msgspec.Struct, gc=False):
    id: int | None = None
    name: str | None = None


class _Coco(msgspec.Struct, gc=False):
    images: list[_Image]
    annotations: list[_Annotation] = []
    categories: list[_Category] = []


_FAST = msgspec.json.Decoder(_Coco)
_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_ANY = msgspec.json.Decoder()
_ENTRY: dict[str, tuple[type[msgspec.Struct], msgspec.json.Decoder]] = {
    "images": (_Image, msgspec.json.Decoder(_Image)),
    "annotations": (_Annotation, msgspec.json.Decoder(_Annotation)),
    "categories": (_Category, msgspec.json.Decoder(_Category)),
}
_INT64 = (-(2**63), 2**63 - 1)
_STR_FIELDS = {"file_name", "caption", "name"}  # all other struct fields but bbox are integers


class _BadFile(Exception):
    """The file as a whole is unusable: (reject_reason, detail)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def _short(text: str, limit: int = _DETAIL_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_utf8(buf: bytes | memoryview) -> None:
    """Raise _BadFile unless `buf` is UTF-8. Arrow validates ~10 GB/s without copying; only on
    failure is the offending offset located (incrementally, to name it in the detail)."""
    data = pa.py_buffer(buf)
    offsets = pa.array([0, len(buf)], pa.int64()).buffers()[1]
    try:
        pa.LargeStringArray.from_buffers(1, offsets, data).validate(full=True)
        return
    except pa.ArrowInvalid:
        pass
    dec, step = codecs.getincrementaldecoder("utf-8")(), 1 << 20
    for start in range(0, len(buf), step):
        pending = len(dec.getstate()[0])  # bytes of a split character carried from the last chunk
        try:
            dec.decode(bytes(buf[start : start + step]), final=start + step >= len(buf))
        except UnicodeDecodeError as e:
            pos = start - pending + e.start
            raise _BadFile("malformed_file", f"not UTF-8: invalid byte 0x{buf[pos]:02x} at offset {pos}") from None
    raise _BadFile("malformed_file", "not UTF-8")  # pragma: no cover - arrow and codecs disagree


def _json_error(buf: bytes | memoryview, err: msgspec.DecodeError) -> _BadFile:
    msg = str(err)
    if "truncated" in msg:
        return _BadFile("malformed_file", f"invalid JSON: ends unexpectedly after {len(buf)} bytes (truncated?)")
    m = re.search(r"\(byte (\d+)\)", msg)
    if m:
        pos = int(m.group(1))
        near = bytes(buf[max(0, pos - 15) : pos + 15]).decode("utf-8", "replace")
        return _BadFile("malformed_file", _short(f"invalid JSON: {msg} near {near!r}"))
    return _BadFile("malformed_file", _short(f"invalid JSON: {msg}"))


def _json_kind(buf: bytes | memoryview) -> str:
    first = bytes(buf[:64]).lstrip()[:1]
    return {b"[": "an array", b'"': "a string", b"t": "a boolean", b"f": "a boolean", b"n": "null"}.get(first, "a number")


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    names: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return names.get(type(v), "null")


def _coerce(raw: msgspec.Raw, cls: type[msgspec.Struct]) -> tuple[Any, str, str | None]:
    """An entry the typed decoder refused: keep the fields of the right type, note the others.
    Returns (struct, note, kind hint for annotations)."""
    try:
        value = _ANY.decode(raw)
    except msgspec.MsgspecError as e:  # e.g. a number out of range
        return cls(), _short(f"entry could not be decoded: {e}"), INVALID
    if not isinstance(value, dict):
        return cls(), f"entry is {_json_type(value)}, not an object", INVALID
    fields, notes = {}, []
    for name in cls.__struct_fields__:
        v = value.get(name)
        if v is None:
            continue
        if name == "bbox":
            ok = isinstance(v, list) and all(type(x) in (int, float) for x in v)
            v, what = ([float(x) for x in v] if ok else v), "a list of numbers"
        elif name in _STR_FIELDS:
            ok, what = isinstance(v, str), "a string"
        else:
            ok, what = type(v) is int and _INT64[0] <= v <= _INT64[1], "a 64-bit integer"
        if ok:
            fields[name] = v
        else:
            notes.append(f"{name} is {_json_type(v)}, not {what}")
    hint = CAPTION if value.get("caption") is not None else BOX if value.get("bbox") is not None else None
    return cls(**fields), "; ".join(notes) or "entry has ill-typed fields", hint


class _Doc:
    """Decoded entries of the three COCO lists. Only after the robust path: `*_bad[i]` is the note
    of an entry that had to be coerced (None if it decoded cleanly), `ann_kind[i]` its kind hint."""

    def __init__(self, images, annotations, categories, images_bad=None, ann_bad=None, ann_kind=None):
        self.images, self.annotations, self.categories = images, annotations, categories
        self.images_bad, self.ann_bad, self.ann_kind = images_bad, ann_bad, ann_kind


def _decode(buf: bytes | memoryview) -> _Doc:
    """Fast path: one typed decode of the whole file. If a record does not fit the types, the
    robust path: split the lists into raw entries and decode those one by one."""
    enabled = gc.isenabled()
    gc.disable()  # ~1M new containers: without this the cyclic GC more than doubles decode time
    try:
        try:
            doc = _FAST.decode(buf)
            return _Doc(doc.images, doc.annotations, doc.categories)
        except msgspec.ValidationError:  # (a subclass of DecodeError: test it first)
            pass
        except msgspec.DecodeError as e:
            raise _json_error(buf, e) from None
        try:
            top = _TOP.decode(buf)  # validates the whole document's syntax
        except msgspec.ValidationError:  # raised at the first byte: is the rest valid JSON?
            try:
                msgspec.json.decode(buf, type=msgspec.Raw)
            except msgspec.DecodeError as e:
                raise _json_error(buf, e) from None
            raise _BadFile("unknown_format", f"top-level JSON value is {_json_kind(buf)}, not a COCO object") from None
        except msgspec.DecodeError as e:
            raise _json_error(buf, e) from None
        if "images" not in top:
            keys = ", ".join(sorted(top)[:8]) or "none"
            raise _BadFile("unknown_format", _short(f"JSON object has no 'images' list (keys: {keys})"))
        out: dict[str, tuple[list, list, list]] = {}
        for key, (cls, decoder) in _ENTRY.items():
            entries: list = []
            notes: list[str | None] = []
            hints: list[str | None] = []
            if key in top and bytes(memoryview(top[key])[:5]) != b"null":  # (no copy of the list)
                try:
                    raws = _RAW_LIST.decode(top[key])
                except msgspec.ValidationError:
                    raise _BadFile("unknown_format", f"'{key}' is not a list") from None
                for raw in raws:
                    try:
                        entries.append(decoder.decode(raw))
                        notes.append(None)
                        hints.append(None)
                    except msgspec.ValidationError:
                        entry, note, hint = _coerce(raw, cls)
                        entries.append(entry)
                        notes.append(note)
                        hints.append(hint)
            elif key == "images":
                raise _BadFile("unknown_format", "'images' is not a list")
            out[key] = (entries, notes, hints)
        return _Doc(out["images"][0], out["annotations"][0], out["categories"][0],
                    out["images"][1], out["annotations"][1], out["annotations"][2])
    finally:
        if enabled:
            gc.enable()


# ------------------------------------------------------------------------------------------------
# entries -> frames -> source records (all checks vectorised)
# ------------------------------------------------------------------------------------------------


def _ints(values: list) -> pl.Series:
    return pl.Series(values, dtype=pl.Int64, strict=False)  # out-of-range ints become null


def _notes(notes: list | None, n: int) -> pl.Series:
    return pl.Series(notes, dtype=pl.String) if notes is not None else pl.repeat(None, n, dtype=pl.String, eager=True)


def _first_match(rules: list[tuple[pl.Expr, str | pl.Expr, pl.Expr | str]]) -> list[pl.Expr]:
    """reject_reason / reject_detail from (condition, reason, detail) rules; the first match wins."""
    lit = lambda v: pl.lit(v, dtype=pl.String) if isinstance(v, str) else v  # noqa: E731
    (c0, r0, d0), rest = rules[0], rules[1:]
    reason: Any = pl.when(c0).then(lit(r0))  # Then, then ChainedThen: both chain .when/.otherwise
    detail: Any = pl.when(c0).then(lit(d0))
    for cond, r, d in rest:
        reason, detail = reason.when(cond).then(lit(r)), detail.when(cond).then(lit(d))
    return [reason.otherwise(None).alias("reject_reason"),
            detail.otherwise(None).str.slice(0, _DETAIL_MAX).alias("reject_detail")]


def _record_id(prefix: pl.Expr) -> pl.Expr:
    """Unique per row: a repeated id gets `@<index>` like a missing one, so lineage joins stay 1:1."""
    native = (pl.when(pl.col("id").is_null()).then(pl.format("@{}", pl.col("idx")))
              .when(pl.col("idx") != pl.col("first")).then(pl.format("{}@{}", pl.col("id"), pl.col("idx")))
              .otherwise(pl.col("id").cast(pl.String)))
    return pl.concat_str([prefix, native]).alias("record_id")


def _path_checks(file_name: pl.Expr) -> dict[str, pl.Expr]:
    """Vectorised twin of paths.normalise_image_key: `key` is the clean posix path, `unsafe` the
    reason it cannot be used (null when safe). Applied to non-null strings only."""
    text = file_name.str.strip_chars().str.replace_all("\\", "/", literal=True)
    parts = text.str.split("/").list.eval(pl.element().filter((pl.element() != "") & (pl.element() != ".")))
    shown = file_name.str.slice(0, 120)
    unsafe = (
        pl.when(text == "").then(pl.lit("image path is empty"))
        .when(text.str.contains("\x00", literal=True)).then(pl.lit("image path contains a NUL byte"))
        .when(text.str.starts_with("/") | (text.str.slice(1, 1) == ":")).then(pl.format("absolute image path {}", shown))
        .when(parts.list.contains("..") | (parts.list.len() == 0))
        .then(pl.format("image path {} leaves the image folder", shown))
    )
    return {"key": parts.list.join("/"), "unsafe": unsafe}


def _image_rows(doc: _Doc, source: str) -> pl.DataFrame:
    imgs = doc.images
    im = pl.DataFrame({
        "id": _ints(list(map(attrgetter("id"), imgs))),
        "file_name": pl.Series(list(map(attrgetter("file_name"), imgs)), dtype=pl.String),
        "width": _ints(list(map(attrgetter("width"), imgs))),
        "height": _ints(list(map(attrgetter("height"), imgs))),
        "bad": _notes(doc.images_bad, len(imgs)),
    }).with_row_index("idx")
    im = im.with_columns(**_path_checks(pl.col("file_name")), first=pl.col("idx").min().over("id"))
    bad_size = lambda c: pl.col(c).is_not_null() & (pl.col(c) <= 0)  # noqa: E731
    im = im.with_columns(
        *_first_match([
            (pl.col("bad").is_not_null(), "invalid_record", pl.col("bad")),
            (pl.col("id").is_null(), "invalid_record", "id is missing or not an integer"),
            (pl.col("file_name").is_null(), "invalid_record", "file_name is missing or not a string"),
            (bad_size("width"), "invalid_record", pl.format("width {} is not a positive integer", pl.col("width"))),
            (bad_size("height"), "invalid_record", pl.format("height {} is not a positive integer", pl.col("height"))),
            (pl.col("idx") != pl.col("first"), "duplicate_record_id",
             pl.format("image id {} repeats images[{}]", pl.col("id"), pl.col("first"))),
            (pl.col("unsafe").is_not_null(), "unsafe_path", pl.col("unsafe")),
        ]),
    )
    return im.with_columns(
        _record_id(pl.lit(f"{source}#{IMAGE}/")),
        kind=pl.lit(IMAGE),
        image_key=pl.when(pl.col("unsafe").is_null()).then(pl.col("key")),
    )


def _annotation_rows(doc: _Doc, source: str, images: pl.DataFrame) -> pl.DataFrame:
    anns, n = doc.annotations, len(doc.annotations)
    an = pl.DataFrame({
        "id": _ints(list(map(attrgetter("id"), anns))),
        "image_id": _ints(list(map(attrgetter("image_id"), anns))),
        "category_id": _ints(list(map(attrgetter("category_id"), anns))),
        "bbox": pl.from_arrow(pa.array(list(map(attrgetter("bbox"), anns)), pa.list_(pa.float64()))),
        "caption": pl.Series(list(map(attrgetter("caption"), anns)), dtype=pl.String),
        "bad": _notes(doc.ann_bad, n),
        "hint": _notes(doc.ann_kind, n),
    }).with_row_index("idx")
    cats = doc.categories
    categories = (
        pl.DataFrame({"category_id": _ints(list(map(attrgetter("id"), cats))),
                      "label": pl.Series(list(map(attrgetter("name"), cats)), dtype=pl.String)})
        .drop_nulls()
        .unique(subset="category_id", keep="first", maintain_order=True)
    )
    image_lookup = images.filter(pl.col("id").is_not_null() & (pl.col("idx") == pl.col("first"))).select(
        image_id=pl.col("id"), image_key=pl.col("image_key"), img_reason=pl.col("reject_reason"),
        img_detail=pl.col("reject_detail"), img_found=pl.lit(True),
    )
    kind = (pl.when(pl.col("hint").is_not_null()).then(pl.col("hint"))
            .when(pl.col("caption").is_not_null()).then(pl.lit(CAPTION))
            .when(pl.col("bbox").is_not_null()).then(pl.lit(BOX))
            .otherwise(pl.lit(INVALID)))
    an = (
        an.with_columns(kind=kind, first=pl.col("idx").min().over("id"))
        .join(image_lookup, on="image_id", how="left", maintain_order="left")
        .join(categories, on="category_id", how="left", maintain_order="left")
    )
    is_box = pl.col("kind") == BOX
    n_box = pl.col("bbox").list.len()
    an = an.with_columns(
        *_first_match([
            (pl.col("bad").is_not_null(), "invalid_record", pl.col("bad")),
            (pl.col("id").is_null(), "invalid_record", "id is missing or not an integer"),
            (pl.col("kind") == INVALID, "invalid_record", "annotation has neither a caption nor a bbox"),
            (pl.col("image_id").is_null(), "invalid_record", "image_id is missing or not an integer"),
            (is_box & (n_box != 4), "invalid_record", pl.format("bbox has {} values, not 4 (x, y, w, h)", n_box)),
            (pl.col("idx") != pl.col("first"), "duplicate_record_id",
             pl.format("annotation id {} repeats annotations[{}]", pl.col("id"), pl.col("first"))),
            (pl.col("img_found").is_null(), "unknown_image_id",
             pl.format("image_id {} is not in images", pl.col("image_id"))),
            (pl.col("img_reason").is_not_null(), pl.col("img_reason"),
             pl.format("image {} rejected: {}", pl.col("image_id"), pl.col("img_detail"))),
            (is_box & pl.col("category_id").is_null(), "invalid_record", "category_id is missing or not an integer"),
            (is_box & pl.col("label").is_null(), "invalid_record",
             pl.format("category_id {} is not in categories", pl.col("category_id"))),
        ]),
    )
    prefix = pl.concat_str([pl.lit(f"{source}#"), pl.col("kind").replace(INVALID, "annotation"), pl.lit("/")])
    box_ok = is_box & (n_box == 4)
    return an.with_columns(
        _record_id(prefix),
        text=pl.when(pl.col("kind") == CAPTION).then(pl.col("caption")),
        label=pl.when(is_box).then(pl.col("label")),
        **{f"bbox_{c}": pl.when(box_ok).then(pl.col("bbox").list.get(i, null_on_oob=True))
           for i, c in enumerate("xywh")},
        bbox_norm=pl.when(is_box).then(pl.lit(False)),
    )


def _to_schema(df: pl.DataFrame, source: str) -> pl.DataFrame:
    return df.select(
        pl.col(c) if c in df.columns else pl.lit(None).alias(c) for c in SOURCE_RECORD_SCHEMA
    ).with_columns(source=pl.lit(source), source_format=pl.lit(SOURCE_FORMAT)).cast(SOURCE_RECORD_SCHEMA)  # type: ignore[arg-type]  # polars: invariant keys


def _file_row(source: str, reason: str, detail: str) -> pl.DataFrame:
    return to_source_records([{
        "source": source, "source_format": SOURCE_FORMAT, "record_id": f"{source}#file", "kind": INVALID,
        "reject_reason": reason, "reject_detail": _short(detail),
    }])


def _read(path: pathlib.Path) -> _Doc:
    """Read and decode; the raw bytes are released on return, before any frame is built."""
    buf: bytes | memoryview = path.read_bytes()
    if not buf or (isinstance(buf, bytes) and buf.isspace()):  # bytes: as read
        raise _BadFile("malformed_file", "empty file")
    _check_utf8(buf)
    if buf[:3] == codecs.BOM_UTF8:
        buf = memoryview(buf)[3:]
    return _decode(buf)


def load_coco(path: pathlib.Path, source: str) -> pl.DataFrame:
    """One COCO JSON file -> source records (see the module docstring). Bad data never raises;
    only an unreadable path (OSError) does."""
    try:
        doc = _read(pathlib.Path(path))
    except _BadFile as e:
        return _file_row(source, e.reason, e.detail)
    images = _image_rows(doc, source)
    annotations = _annotation_rows(doc, source, images)
    del doc
    return pl.concat([_to_schema(images, source), _to_schema(annotations, source)], how="vertical")


_SNIFF = re.compile(rb'"(?:images|annotations)"\s*:\s*\[')


def looks_like_coco(head: bytes) -> bool:
    """Cheap sniff of a file's first few KB: a JSON object with an "images" or "annotations" list."""
    text = head[3:] if head[:3] == codecs.BOM_UTF8 else head
    return text.lstrip()[:1] == b"{" and _SNIFF.search(text) is not None

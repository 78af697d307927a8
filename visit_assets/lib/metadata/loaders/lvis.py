"""LVIS v1 loader (format `lvis`): `lvis_v1_train.json`, `lvis_v1_val.json` (any `lvis_v*` file of this layout).

LVIS annotates the COCO 2017 images in a COCO-like JSON:

    {"info", "licenses",
     "images": [{"id", "coco_url": "http://images.cocodataset.org/train2017/000000391895.jpg", "height", "width",
                 "not_exhaustive_category_ids": [...], "neg_category_ids": [...], "license", "flickr_url", ...}],
     "annotations": [{"id", "image_id", "bbox": [x, y, w, h] (pixels), "category_id", "area", "segmentation"}],
     "categories": [{"id", "name", "synonyms", "def", "synset", "frequency", "image_count", ...}]}

Images have no "file_name", so the COCO loader rejects every one of them (file_name missing): hence
this loader. The image key is the coco_url's last two path parts, `<split>2017/<file>.jpg`, as the
COCO 2017 zips unpack (the LVIS val split also holds train2017 images: the url names the right
folder). So `images:` in dataset.yaml names the folder holding `train2017/` and `val2017/` (or
COCO's 2014 folders: ../coco_images.py resolves the key to whichever naming is on disk and merges
it with COCO 2014 / VQAv2 / RefCOCO / Visual Genome records of the same picture).

Rows are the COCO loader's (coco.py: the same checks, ids and reasons, vectorised), with
source_format "lvis": one "image" row per images entry, `<source>#image/<id>` (width/height given),
one "box" row per annotation, `<source>#box/<id>` with label = its category's "name" (LVIS names are
synset-like, "baseball_bat": underscores become spaces) and the pixel bbox; an annotation without
a bbox is `#annotation/<id>` invalid_record. A missing or non-string coco_url is invalid_record
("coco_url is missing or not a string"), a url whose key leaves the image folder unsafe_path.
Segmentations, synonyms, definitions and the per-image not_exhaustive / negative category lists are
not read: the records have no field for them (a negative label could become a "no" QA, but an
absent label is not an answer we are asked for; left out on purpose).

Detection: a COCO-structured file (an "images"/"annotations" list) is LVIS (2, beating COCO's 1)
when its head has "neg_category_ids" or "not_exhaustive_category_ids", or its name is
`lvis_v<version>_*.json` (the official files list annotations first, so the image keys may lie past
the 64 KB head).
"""

from __future__ import annotations

import pathlib
import re
from typing import Any

import msgspec
import polars as pl

from . import coco
from .registry import NO, SIGNATURE, Loader
from .visual_genome import image_key_from_url

FORMAT = "lvis"
_NAME = re.compile(r"^lvis_v\d[\w.-]*\.json$", re.IGNORECASE)
_SIGNATURE = re.compile(rb'"(?:neg_category_ids|not_exhaustive_category_ids)"\s*:')


class _Image(msgspec.Struct, gc=False):
    id: int | None = None
    coco_url: str | None = None
    width: int | None = None
    height: int | None = None


class _Lvis(msgspec.Struct, gc=False):
    images: list[_Image]
    annotations: list[coco._Annotation] = []
    categories: list[coco._Category] = []


_FAST = msgspec.json.Decoder(_Lvis)
_IMAGE = msgspec.json.Decoder(_Image)


def detect(path: pathlib.Path, head: bytes) -> int:
    if path.suffix != ".json" or not coco.looks_like_coco(head):
        return NO
    return SIGNATURE if _SIGNATURE.search(head) or _NAME.match(path.name) else NO


def _key(url: str | None) -> str | None:
    return image_key_from_url(url) if isinstance(url, str) and url.strip() else None


def _coerce_image(raw: msgspec.Raw) -> tuple[coco._Image, str | None]:
    try:
        return coco._Image(**_fields(_IMAGE.decode(raw))), None
    except msgspec.ValidationError:
        pass
    try:
        value: Any = coco._ANY.decode(raw)
    except msgspec.MsgspecError as e:
        return coco._Image(), coco._short(f"entry could not be decoded: {e}")
    if not isinstance(value, dict):
        return coco._Image(), f"entry is {coco._json_type(value)}, not an object"
    fields, notes = {}, []
    for name in ("id", "coco_url", "width", "height"):
        v = value.get(name)
        if v is None:
            continue
        what = "a string" if name == "coco_url" else "an integer"
        if (isinstance(v, str) if name == "coco_url" else type(v) is int and coco._INT64[0] <= v <= coco._INT64[1]):
            fields[name] = v
        else:
            notes.append(f"{name} is {coco._json_type(v)}, not {what}")
    return coco._Image(**_fields(_Image(**fields))), "; ".join(notes) or "entry has ill-typed fields"


def _fields(img: _Image) -> dict:
    return {"id": img.id, "file_name": _key(img.coco_url), "width": img.width, "height": img.height}


def _decode(buf: bytes | memoryview) -> coco._Doc:
    """The COCO loader's document, images keyed by coco_url. Fast path: one typed decode; else
    entry by entry (images here, annotations and categories by coco's coercion)."""
    try:
        doc = _FAST.decode(buf)
        return coco._Doc([coco._Image(**_fields(i)) for i in doc.images], doc.annotations, doc.categories)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as e:
        raise coco._json_error(buf, e) from None
    try:
        top = coco._TOP.decode(buf)
    except msgspec.ValidationError:  # raised at the first byte: is the rest valid JSON?
        try:
            msgspec.json.decode(buf, type=msgspec.Raw)
        except msgspec.DecodeError as e:
            raise coco._json_error(buf, e) from None
        what = coco._json_kind(buf)
        raise coco._BadFile("unknown_format", f"top-level JSON value is {what}, not an LVIS object") from None
    except msgspec.DecodeError as e:
        raise coco._json_error(buf, e) from None
    if "images" not in top:
        keys = ", ".join(sorted(top)[:8]) or "none"
        raise coco._BadFile("unknown_format", coco._short(f"JSON object has no 'images' list (keys: {keys})"))
    lists: dict[str, list] = {}
    for key in ("images", "annotations", "categories"):
        raw = top.get(key)
        if raw is None or bytes(memoryview(raw)[:4]) == b"null":
            if key == "images":
                raise coco._BadFile("unknown_format", "'images' is not a list")
            lists[key] = []
            continue
        try:
            lists[key] = coco._RAW_LIST.decode(raw)
        except msgspec.ValidationError:
            raise coco._BadFile("unknown_format", f"'{key}' is not a list") from None
    images, images_bad = zip(*map(_coerce_image, lists["images"]), strict=True) if lists["images"] else ((), ())
    anns: list = []
    ann_bad: list[str | None] = []
    ann_kind: list[str | None] = []
    for raw in lists["annotations"]:
        try:
            anns.append(coco._ENTRY["annotations"][1].decode(raw))
            ann_bad.append(None)
            ann_kind.append(None)
        except msgspec.ValidationError:
            entry, note, hint = coco._coerce(raw, coco._Annotation)
            anns.append(entry)
            ann_bad.append(note)
            ann_kind.append(hint)
    cats = []
    for raw in lists["categories"]:
        try:
            cats.append(coco._ENTRY["categories"][1].decode(raw))
        except msgspec.ValidationError:
            cats.append(coco._coerce(raw, coco._Category)[0])
    return coco._Doc(list(images), anns, cats, list(images_bad), ann_bad, ann_kind)


def load_lvis(path: pathlib.Path, source: str) -> pl.DataFrame:
    """One LVIS JSON file -> source records (module docstring). Bad data never raises."""
    try:
        buf: bytes | memoryview = pathlib.Path(path).read_bytes()
        if not buf or (isinstance(buf, bytes) and buf.isspace()):  # bytes: as read
            raise coco._BadFile("malformed_file", "empty file")
        coco._check_utf8(buf)
        if buf[:3] == b"\xef\xbb\xbf":
            buf = memoryview(buf)[3:]
        doc = _decode(buf)
        del buf
    except coco._BadFile as e:
        return coco._file_row(source, e.reason, e.detail).with_columns(source_format=pl.lit(FORMAT))
    for cat in doc.categories:
        if isinstance(cat.name, str):
            cat.name = cat.name.replace("_", " ")
    images = coco._image_rows(doc, source)
    annotations = coco._annotation_rows(doc, source, images)
    del doc
    out = pl.concat([coco._to_schema(images, source), coco._to_schema(annotations, source)], how="vertical")
    return out.with_columns(
        source_format=pl.lit(FORMAT),
        reject_detail=pl.col("reject_detail").str.replace("file_name is missing or not a string",
                                                          "coco_url is missing or not a string", literal=True),
    )


LOADER = Loader(FORMAT, load_lvis, detect, description="LVIS v1 instances JSON (COCO 2017 images by coco_url)")

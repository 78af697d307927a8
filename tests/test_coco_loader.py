"""load_coco on small hand-made COCO files: exact rows and reject reasons."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.loaders.coco import load_coco, looks_like_coco
from visit_assets.lib.metadata.records import REJECT_REASONS, SOURCE_RECORD_SCHEMA

SRC = "annotations/coco.json"


def _img(id, file_name, width=640, height=480):
    return {"license": 1, "file_name": file_name, "coco_url": "http://x/y.jpg", "height": height,
            "width": width, "date_captured": "2013-11-14 11:18:45", "flickr_url": "http://x/z.jpg", "id": id}


def _box(id, image_id, category_id, bbox=(10.0, 20.5, 30, 40)):
    return {"segmentation": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], "area": 1200.5, "iscrowd": 0,
            "image_id": image_id, "bbox": list(bbox), "category_id": category_id, "id": id}


CATS = [{"supercategory": "animal", "id": 18, "name": "dog"}, {"supercategory": "animal", "id": 17, "name": "cat"}]


def _write(tmp_path: Path, doc, name: str = "coco.json") -> Path:
    p = tmp_path / name
    if isinstance(doc, bytes):
        p.write_bytes(doc)
    else:
        p.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    return p


def _load(tmp_path: Path, doc, n_records: int | None = None) -> pl.DataFrame:
    df = load_coco(_write(tmp_path, doc), SRC)
    assert df.schema == pl.Schema(SOURCE_RECORD_SCHEMA)
    if n_records is None:  # a COCO dict: one row per image entry and per annotation entry
        n_records = len(doc.get("images", [])) + len(doc.get("annotations", []))
    assert df.height == n_records
    assert df["source"].to_list() == [SRC] * df.height
    assert set(df["source_format"]) == {"coco"}
    assert set(df["reject_reason"].drop_nulls()) <= set(REJECT_REASONS)
    assert df.filter(pl.col("reject_reason").is_null())["reject_detail"].null_count() == df.filter(
        pl.col("reject_reason").is_null()).height
    assert df.filter(pl.col("reject_reason").is_not_null())["reject_detail"].null_count() == 0
    return df


def _rows(df: pl.DataFrame, *cols: str) -> list[tuple]:
    return df.select(cols).rows()


def _reasons(df: pl.DataFrame) -> dict[str, str | None]:
    return dict(df.select("record_id", "reject_reason").rows())


def _assert_file_row(df: pl.DataFrame, reason: str, detail_part: str) -> None:
    assert df.height == 1
    row = df.row(0, named=True)
    assert row["record_id"] == f"{SRC}#file"
    assert row["kind"] == "invalid"
    assert row["reject_reason"] == reason
    assert detail_part in row["reject_detail"]
    assert row["image_key"] is None


# -- valid files ------------------------------------------------------------------------------------


def test_valid_captions_file(tmp_path):
    doc = {
        "info": {"description": "t"}, "licenses": [{"id": 1, "name": "x", "url": "u"}],
        "images": [_img(9, "000000000009.jpg", 640, 480), _img(25, "./train/./000000000025.jpg", 500, 375)],
        "annotations": [
            {"image_id": 9, "id": 1, "caption": "A plate of food."},
            {"image_id": 25, "id": 2, "caption": "A giraffe eating leaves."},
            {"image_id": 9, "id": 3, "caption": "Food on a table."},
        ],
    }
    df = _load(tmp_path, doc)
    assert _rows(df, "record_id", "kind", "image_key", "width", "height", "text") == [
        (f"{SRC}#image/9", "image", "000000000009.jpg", 640, 480, None),
        (f"{SRC}#image/25", "image", "train/000000000025.jpg", 500, 375, None),
        (f"{SRC}#caption/1", "caption", "000000000009.jpg", None, None, "A plate of food."),
        (f"{SRC}#caption/2", "caption", "train/000000000025.jpg", None, None, "A giraffe eating leaves."),
        (f"{SRC}#caption/3", "caption", "000000000009.jpg", None, None, "Food on a table."),
    ]
    assert df["reject_reason"].null_count() == df.height
    assert df["label"].null_count() == df["bbox_x"].null_count() == df["bbox_norm"].null_count() == df.height


def test_valid_instances_file(tmp_path):
    doc = {
        "info": {}, "licenses": [],
        "images": [_img(1, "a.jpg"), _img(2, "sub\\b.jpg", 300, 200)],
        "annotations": [_box(100, 1, 18), _box(101, 2, 17, (0, 0, 5.5, 6)),
                        # crowd region: RLE segmentation, still just a box for us
                        {**_box(102, 1, 18), "iscrowd": 1, "segmentation": {"counts": [1, 2, 3], "size": [480, 640]}}],
        "categories": CATS,
    }
    df = _load(tmp_path, doc)
    assert _rows(df, "record_id", "kind", "image_key", "label", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "bbox_norm") == [
        (f"{SRC}#image/1", "image", "a.jpg", None, None, None, None, None, None),
        (f"{SRC}#image/2", "image", "sub/b.jpg", None, None, None, None, None, None),
        (f"{SRC}#box/100", "box", "a.jpg", "dog", 10.0, 20.5, 30.0, 40.0, False),
        (f"{SRC}#box/101", "box", "sub/b.jpg", "cat", 0.0, 0.0, 5.5, 6.0, False),
        (f"{SRC}#box/102", "box", "a.jpg", "dog", 10.0, 20.5, 30.0, 40.0, False),
    ]
    assert df["reject_reason"].null_count() == df.height
    assert df["text"].null_count() == df.height


def test_images_only_file_and_bom(tmp_path):
    raw = b"\xef\xbb\xbf" + json.dumps({"images": [_img(1, "a.jpg")], "categories": CATS}).encode()
    df = _load(tmp_path, raw, n_records=1)
    assert _rows(df, "record_id", "image_key", "reject_reason") == [(f"{SRC}#image/1", "a.jpg", None)]


# -- record-level rejects ---------------------------------------------------------------------------


def test_unknown_image_id(tmp_path):
    doc = {"images": [_img(1, "a.jpg")],
           "annotations": [{"image_id": 1, "id": 1, "caption": "ok"}, {"image_id": 7, "id": 2, "caption": "orphan"},
                           _box(3, 8, 18)],
           "categories": CATS}
    df = _load(tmp_path, doc)
    assert _rows(df, "record_id", "kind", "image_key", "reject_reason", "reject_detail") == [
        (f"{SRC}#image/1", "image", "a.jpg", None, None),
        (f"{SRC}#caption/1", "caption", "a.jpg", None, None),
        (f"{SRC}#caption/2", "caption", None, "unknown_image_id", "image_id 7 is not in images"),
        (f"{SRC}#box/3", "box", None, "unknown_image_id", "image_id 8 is not in images"),
    ]


def test_duplicate_ids(tmp_path):
    doc = {"images": [_img(1, "a.jpg"), _img(2, "b.jpg"), _img(1, "c.jpg")],
           "annotations": [_box(5, 1, 18), _box(6, 2, 17), _box(5, 2, 17), {"image_id": 2, "id": 6, "caption": "x"}],
           "categories": CATS}
    df = _load(tmp_path, doc)
    assert _rows(df, "record_id", "image_key", "reject_reason", "reject_detail") == [
        (f"{SRC}#image/1", "a.jpg", None, None),
        (f"{SRC}#image/2", "b.jpg", None, None),
        (f"{SRC}#image/1@2", "c.jpg", "duplicate_record_id", "image id 1 repeats images[0]"),
        (f"{SRC}#box/5", "a.jpg", None, None),
        (f"{SRC}#box/6", "b.jpg", None, None),
        (f"{SRC}#box/5@2", "b.jpg", "duplicate_record_id", "annotation id 5 repeats annotations[0]"),
        (f"{SRC}#caption/6@3", "b.jpg", "duplicate_record_id", "annotation id 6 repeats annotations[1]"),
    ]


def test_unsafe_paths(tmp_path):
    doc = {"images": [_img(1, "/etc/passwd"), _img(2, "../outside.jpg"), _img(3, "imgs/../../x.jpg"),
                      _img(4, "C:\\data\\x.jpg"), _img(5, "ok/./fine..name.jpg")],
           "annotations": [{"image_id": 1, "id": 1, "caption": "leaks"}, {"image_id": 5, "id": 2, "caption": "fine"}]}
    df = _load(tmp_path, doc)
    assert _rows(df, "record_id", "image_key", "reject_reason") == [
        (f"{SRC}#image/1", None, "unsafe_path"),
        (f"{SRC}#image/2", None, "unsafe_path"),
        (f"{SRC}#image/3", None, "unsafe_path"),
        (f"{SRC}#image/4", None, "unsafe_path"),
        (f"{SRC}#image/5", "ok/fine..name.jpg", None),
        # an annotation of a rejected image is rejected with the image's reason, never dropped
        (f"{SRC}#caption/1", None, "unsafe_path"),
        (f"{SRC}#caption/2", "ok/fine..name.jpg", None),
    ]
    details = df["reject_detail"].to_list()
    assert details[0] == "absolute image path /etc/passwd"
    assert details[1] == "image path ../outside.jpg leaves the image folder"
    assert details[5] == "image 1 rejected: absolute image path /etc/passwd"


TRICKY_PATHS = ["a.jpg", "./a.jpg", " sub/./b.jpg ", "sub//c.jpg", "sub\\d.jpg", "x/../y.jpg", "../z.jpg",
                "/abs.jpg", "\\\\host\\share.jpg", "C:\\x.jpg", "c:rel.jpg", "", "   ", ".", "./", "a\x00b.jpg",
                "..", "a/..", "ok..jpg", "dir/.hidden.jpg", "caf\u00e9/\u00fc.jpg"]


def test_paths_agree_with_normalise_image_key(tmp_path):
    """The vectorised path checks give exactly what paths.normalise_image_key gives per path."""
    from visit_assets.lib.metadata.paths import UnsafePath, normalise_image_key

    doc = {"images": [_img(i, p) for i, p in enumerate(TRICKY_PATHS)]}
    df = _load(tmp_path, doc)
    for raw, (key, reason) in zip(TRICKY_PATHS, _rows(df, "image_key", "reject_reason"), strict=True):
        try:
            expected = (normalise_image_key(raw), None)
        except UnsafePath:
            expected = (None, "unsafe_path")
        assert (key, reason) == expected, raw


def test_invalid_records_fast_path(tmp_path):
    """Well-typed but incomplete entries: no fallback needed, still one row each."""
    doc = {"images": [_img(1, "a.jpg"), {"file_name": "noid.jpg"}, {"id": 3}, _img(4, "d.jpg", width=0),
                      {"id": 5, "file_name": "nosize.jpg"}],
           "annotations": [_box(1, 1, 99), {**_box(2, 1, 18), "bbox": [1, 2, 3]}, {"id": 3, "image_id": 1},
                           {"image_id": 1, "caption": "no id"}, {"id": 5, "caption": "no image"},
                           {k: v for k, v in _box(6, 1, 18).items() if k != "category_id"},
                           {"id": 7, "image_id": 4, "caption": "of a bad image"}],
           "categories": CATS}
    df = _load(tmp_path, doc)
    assert _rows(df, "record_id", "kind", "reject_reason", "reject_detail") == [
        (f"{SRC}#image/1", "image", None, None),
        (f"{SRC}#image/@1", "image", "invalid_record", "id is missing or not an integer"),
        (f"{SRC}#image/3", "image", "invalid_record", "file_name is missing or not a string"),
        (f"{SRC}#image/4", "image", "invalid_record", "width 0 is not a positive integer"),
        (f"{SRC}#image/5", "image", None, None),
        (f"{SRC}#box/1", "box", "invalid_record", "category_id 99 is not in categories"),
        (f"{SRC}#box/2", "box", "invalid_record", "bbox has 3 values, not 4 (x, y, w, h)"),
        (f"{SRC}#annotation/3", "invalid", "invalid_record", "annotation has neither a caption nor a bbox"),
        (f"{SRC}#caption/@3", "caption", "invalid_record", "id is missing or not an integer"),
        (f"{SRC}#caption/5", "caption", "invalid_record", "image_id is missing or not an integer"),
        (f"{SRC}#box/6", "box", "invalid_record", "category_id is missing or not an integer"),
        (f"{SRC}#caption/7", "caption", "invalid_record", "image 4 rejected: width 0 is not a positive integer"),
    ]
    assert df.filter(pl.col("record_id") == f"{SRC}#image/5")["width"].to_list() == [None]  # unknown, not rejected
    assert df.filter(pl.col("kind") == "box")["bbox_x"].null_count() == 1  # only the 3-value bbox has none


def test_ill_typed_records_robust_path(tmp_path):
    """Entries whose types do not fit (string id, non-object entries) take the robust path."""
    doc = {"images": [_img(1, "a.jpg"), _img("2", "b.jpg"), 42, _img(4, 5), _img(5, "e.jpg", width="640")],
           "annotations": [{"image_id": 1, "id": 1, "caption": "good"}, {"image_id": 1, "id": 2, "caption": 17},
                           [1, 2], {**_box(4, 1, 18), "bbox": [1, "2", 3, 4]}, {**_box(5, 1, 18), "id": True},
                           _box(6, 1, 17), {"image_id": 1, "id": 2**70, "caption": "id out of range"}],
           "categories": CATS + ["junk"]}
    df = _load(tmp_path, doc)
    assert _rows(df, "record_id", "kind", "image_key", "reject_reason", "reject_detail") == [
        (f"{SRC}#image/1", "image", "a.jpg", None, None),
        (f"{SRC}#image/@1", "image", "b.jpg", "invalid_record", "id is a string, not a 64-bit integer"),
        (f"{SRC}#image/@2", "image", None, "invalid_record", "entry is a number, not an object"),
        (f"{SRC}#image/4", "image", None, "invalid_record", "file_name is a number, not a string"),
        (f"{SRC}#image/5", "image", "e.jpg", "invalid_record", "width is a string, not a 64-bit integer"),
        (f"{SRC}#caption/1", "caption", "a.jpg", None, None),
        (f"{SRC}#caption/2", "caption", "a.jpg", "invalid_record", "caption is a number, not a string"),
        (f"{SRC}#annotation/@2", "invalid", None, "invalid_record", "entry is an array, not an object"),
        (f"{SRC}#box/4", "box", "a.jpg", "invalid_record", "bbox is an array, not a list of numbers"),
        (f"{SRC}#box/@4", "box", "a.jpg", "invalid_record", "id is a boolean, not a 64-bit integer"),
        (f"{SRC}#box/6", "box", "a.jpg", None, None),
        (f"{SRC}#caption/@6", "caption", "a.jpg", "invalid_record", "id is missing or not an integer"),
    ]
    assert _rows(df.filter(pl.col("record_id") == f"{SRC}#box/6"), "label", "bbox_w") == [("cat", 30.0)]


# -- file-level rejects -----------------------------------------------------------------------------


def test_malformed_json_cut_midway(tmp_path):
    full = json.dumps({"images": [_img(1, "a.jpg")], "annotations": [_box(1, 1, 18)], "categories": CATS}).encode()
    df = _load(tmp_path, full[: len(full) // 2], n_records=1)
    _assert_file_row(df, "malformed_file", "invalid JSON")


def test_malformed_json_syntax_error(tmp_path):
    df = _load(tmp_path, b'{"images": [{"id": 1,, "file_name": "a.jpg"}]}', n_records=1)
    _assert_file_row(df, "malformed_file", "invalid JSON")
    # a syntax error after a type mismatch is still found (the robust path re-validates the file)
    df = _load(tmp_path, b'{"images": [{"id": "1"}], "annotations": [1 2]}', n_records=1)
    _assert_file_row(df, "malformed_file", "invalid JSON")
    # NaN is not JSON
    df = _load(tmp_path, b'{"images": [], "annotations": [{"id": 1, "image_id": 1, "bbox": [NaN, 1, 2, 3]}]}', n_records=1)
    _assert_file_row(df, "malformed_file", "invalid JSON")


def test_non_utf8_bytes(tmp_path):
    raw = json.dumps({"images": [_img(1, "caf\u00e9.jpg")], "annotations": []}, ensure_ascii=False).encode("latin-1")
    df = _load(tmp_path, raw, n_records=1)
    _assert_file_row(df, "malformed_file", "not UTF-8")
    assert "0xe9" in df["reject_detail"][0]
    # invalid bytes inside a field the loader would otherwise skip are caught too
    raw = b'{"images": [], "info": {"x": "\xff\xfe"}}'
    _assert_file_row(_load(tmp_path, raw, n_records=1), "malformed_file", "not UTF-8")


@pytest.mark.parametrize("doc, detail", [
    ([{"image": "a.jpg", "conversations": []}], "top-level JSON value is an array"),
    ({"info": {}, "data": [1, 2]}, "no 'images' list"),
    ({"images": {"1": "a.jpg"}}, "'images' is not a list"),
    ({"images": [], "annotations": "none"}, "'annotations' is not a list"),
    ("just a string", "top-level JSON value is a string"),
    (3.5, "top-level JSON value is a number"),
])
def test_valid_json_that_is_not_coco(tmp_path, doc, detail):
    df = _load(tmp_path, json.dumps(doc).encode(), n_records=1)
    _assert_file_row(df, "unknown_format", detail)


@pytest.mark.parametrize("raw", [b"", b"  \n\t"])
def test_empty_file(tmp_path, raw):
    _assert_file_row(_load(tmp_path, raw, n_records=1), "malformed_file", "empty file")


def test_record_ids_unique_when_ids_are(tmp_path):
    doc = {"images": [_img(i, f"{i}.jpg") for i in range(1, 50)],
           "annotations": [{"image_id": i % 49 + 1, "id": i, "caption": f"c {i}"} for i in range(100)]
           + [_box(i, i % 49 + 1, 18) for i in range(100, 150)], "categories": CATS}
    df = _load(tmp_path, doc)
    assert df["record_id"].n_unique() == df.height == 199


# -- sniffing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("head, expected", [
    (b'{"info":{"description":"COCO 2017"},"licenses":[],"images":[{"license":3,', True),
    (b'\xef\xbb\xbf{\n  "images": [\n    {"id": 1', True),
    (b'{"annotations": [{"image_id": 1', True),
    (b'[{"id": "x", "image": "a.jpg", "conversations": [', False),
    (b'{"image": "a.jpg", "caption": "x"}\n{"image": "b.jpg"', False),
    (b"PAR1\x15\x04", False),
    (b"", False),
])
def test_looks_like_coco(head, expected):
    assert looks_like_coco(head) is expected

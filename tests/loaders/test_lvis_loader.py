"""The lvis loader on small files in the official LVIS v1 layout (COCO-like, images keyed by coco_url)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.loaders.coco import load_coco
from visit_assets.lib.metadata.loaders.lvis import load_lvis

DATA = Path(__file__).parent.parent / "data" / "loaders" / "lvis"
VAL = "good/lvis_v1_val.json"
TRAIN = "bad_records/lvis_v1_train.json"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(name: str) -> pl.DataFrame:
        return loaded(load_lvis, DATA / name, name, "lvis")
    return run


def test_coco_loader_cannot_read_lvis():
    df = load_coco(DATA / VAL, VAL)
    images = df.filter(pl.col("kind") == "image")
    assert set(images["reject_detail"]) == {"file_name is missing or not a string"}


def test_good_file_gives_images_and_labelled_boxes(load):
    df = load(VAL)
    doc = json.loads((DATA / VAL).read_text(encoding="utf-8"))
    assert df["reject_reason"].null_count() == df.height
    assert dict(df.group_by("kind").len().rows()) == {"image": 3, "box": 4}
    images = df.filter(pl.col("kind") == "image")
    assert images.select("record_id", "image_key", "width", "height").rows() == [
        (f"{VAL}#image/397133", "val2017/000000397133.jpg", 640, 480),
        (f"{VAL}#image/391895", "train2017/000000391895.jpg", 360, 640),  # LVIS val holds train2017 images
        (f"{VAL}#image/37777", "val2017/000000037777.jpg", 352, 230),
    ]
    boxes = df.filter(pl.col("kind") == "box")
    assert boxes["record_id"].to_list() == [f"{VAL}#box/{a['id']}" for a in doc["annotations"]]
    assert boxes["label"].to_list() == ["baseball bat", "dog", "dog", "baseball bat"]
    assert boxes.select("bbox_x", "bbox_y", "bbox_w", "bbox_h", "bbox_norm").row(1) == (100.5, 50.0, 20.0, 40.0, False)
    assert boxes["image_key"][2] == "train2017/000000391895.jpg"


def test_bad_records_are_rows_with_reasons(load):
    df = load(TRAIN)
    doc = json.loads((DATA / TRAIN).read_text(encoding="utf-8"))
    assert df.height == len(doc["images"]) + len(doc["annotations"])  # every entry accounted for
    got = {r["record_id"].split("#")[1]: r["reject_reason"] for r in df.iter_rows(named=True)}
    assert got == {
        "image/1": None,
        "image/2": "invalid_record",  # no coco_url
        "image/3": "unsafe_path",
        "image/@3": "invalid_record",  # not an object
        "image/1@4": "duplicate_record_id",
        "box/1": None,
        "box/2": "unknown_image_id",
        "annotation/3": "invalid_record",  # no bbox
        "box/4": "invalid_record",  # unknown category
        "box/5": "invalid_record",  # string image_id
        "box/6": "invalid_record",  # its image was rejected
    }
    details = dict(zip(df["record_id"], df["reject_detail"], strict=True))
    assert details[f"{TRAIN}#image/2"] == "coco_url is missing or not a string"


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "malformed_file"),
    (b'{"images": [', "malformed_file"),
    (b"[1, 2]", "unknown_format"),
    (b'{"annotations": []}', "unknown_format"),
    (b'{"images": {}}', "unknown_format"),
    (b"\xff{}", "malformed_file"),
])
def test_unreadable_files_are_one_row(tmp_path, content, reason):
    path = tmp_path / "lvis_v1_val.json"
    path.write_bytes(content)
    df = load_lvis(path, "x.json")
    assert df["record_id"].to_list() == ["x.json#file"]
    assert df["reject_reason"].to_list() == [reason]
    assert df["source_format"].to_list() == ["lvis"]


def test_detection_beats_coco_and_takes_nothing_else(tmp_path, claims_on_other_fixtures):
    assert detect_format(DATA / VAL) == "lvis"
    assert detect_format(DATA / TRAIN) == "lvis"
    # annotations first and longer than the head: the official name still says LVIS
    doc = json.loads((DATA / VAL).read_text(encoding="utf-8"))
    doc["annotations"] = doc["annotations"] * 2000
    big = tmp_path / "lvis_v1_train.json"
    big.write_text(json.dumps({"info": {}, "annotations": doc["annotations"], "images": doc["images"]}), encoding="utf-8")
    assert big.stat().st_size > registry.HEAD_BYTES
    assert detect_format(big) == "lvis"
    renamed = tmp_path / "instances.json"
    shutil.copy(big, renamed)
    assert detect_format(renamed) == "coco"  # no signature in the head, no LVIS name
    assert claims_on_other_fixtures("lvis", DATA) == []


def test_robust_path_matches_fast_path(tmp_path, load):
    doc = json.loads((DATA / VAL).read_text(encoding="utf-8"))
    doc["images"].append("odd")  # forces the entry-by-entry decode
    path = tmp_path / "lvis_v1_val.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    robust = load_lvis(path, VAL)
    assert robust.filter(pl.col("record_id") != f"{VAL}#image/@3").equals(load(VAL))


def test_lvis_file_in_a_dataset(tmp_path):
    root = tmp_path / "lvis"
    (root / "images").mkdir(parents=True)
    shutil.copy(DATA / VAL, root / "lvis_v1_val.json")
    layout = read_layout(root)
    assert [(p.name, f) for p, f in layout.sources] == [("lvis_v1_val.json", None)]
    records = load_dataset(layout, n_shards=2)
    assert records.height == 7 and set(records["source_format"]) == {"lvis"}

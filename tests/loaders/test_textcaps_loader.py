"""The textcaps loader on small files in the official on-disk format (captions + TextVQA's Rosetta OCR)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import dataset_version, load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format
from visit_assets.lib.metadata.loaders.textcaps import load_textcaps

DATA = Path(__file__).parent.parent / "data" / "loaders"
TC = DATA / "textcaps"
TRAIN, VAL, TEST = "TextCaps_0.1_train.json", "TextCaps_0.1_val.json", "TextCaps_0.1_test.json"
OCR = "TextVQA_Rosetta_OCR_v0.2_train.json"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str) -> pl.DataFrame:
        return loaded(load_textcaps, TC / folder / name, f"{folder}/{name}", "textcaps")
    return run


def _data(folder: str, name: str) -> list:
    return json.loads((TC / folder / name).read_text(encoding="utf-8"))["data"]


def test_good_split_gives_images_captions_and_ocr_tokens(load):
    df = load("good", TRAIN)
    entries, ocr = _data("good", TRAIN), _data("good", OCR)
    image_ids = list(dict.fromkeys(e["image_id"] for e in entries))
    n_tokens = sum(len(e["ocr_info"]) for e in ocr)
    assert dict(df.group_by("kind").len().rows()) == {"image": len(image_ids), "caption": len(entries), "ocr": n_tokens}
    assert df["reject_reason"].null_count() == df.height
    images = df.filter(pl.col("kind") == "image")
    assert images["image_key"].to_list() == [f"train_images/{i}.jpg" for i in image_ids]
    assert images.select("width", "height").rows() == [(1024, 664), (683, 1024), (1024, 768)]
    caps = df.filter(pl.col("kind") == "caption")
    assert caps.select("record_id", "image_key", "text").rows() == [
        (f"good/{TRAIN}#caption/{e['caption_id']}", f"train_images/{e['image_id']}.jpg", e["caption_str"]) for e in entries]
    tok = df.filter(pl.col("kind") == "ocr").row(0, named=True)
    box = ocr[0]["ocr_info"][0]["bounding_box"]
    assert (tok["record_id"], tok["image_key"], tok["text"], tok["bbox_x"], tok["bbox_w"], tok["bbox_norm"]) == (
        f"good/{TRAIN}#ocr/0054c91397f2fe05/0", "train_images/0054c91397f2fe05.jpg", "DAKOTA",
        box["top_left_x"], box["width"], True)


def test_test_split_entries_have_no_caption_and_test_images(load):
    df = load("test_split", TEST)
    caps = df.filter(pl.col("kind") == "caption")
    assert caps["record_id"].to_list() == [f"test_split/{TEST}#caption/@0", f"test_split/{TEST}#caption/@1"]
    assert set(caps["reject_detail"]) == {"no caption: the test split publishes images only"}
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == [
        "test_images/00a3d6a1b3a8a4c2.jpg", "test_images/00b5d6a1b3a8a4c3.jpg"]
    assert "ocr" not in set(df["kind"])  # no OCR file beside it: no rows


def test_bad_records_are_rejected_one_row_each(load):
    df = load("bad_records", VAL)
    s = f"bad_records/{VAL}"
    assert {k: v for k, v in df.select("record_id", "reject_reason").rows() if v} == {
        f"{s}#caption/@1": "invalid_record",  # caption_id "202" is a string
        f"{s}#caption/203": "invalid_record",  # blank caption
        f"{s}#caption/201@3": "duplicate_record_id",
        f"{s}#caption/204": "invalid_record",  # image_id "../../etc/passwd"
        f"{s}#caption/@5": "invalid_record",  # 42, not an object
        f"{s}#caption/205": "invalid_record",  # no image_id
        f"{s}#ocr/006d10667d17b924/0": "unknown_image_id",  # no caption entry names the image
    }
    assert df.filter(pl.col("image_key").str.contains("..", literal=True)).height == 0
    unknown = df.filter(pl.col("reject_reason") == "unknown_image_id")["reject_detail"][0]
    assert unknown == "no caption entry names image 006d10667d17b924"
    entries, ocr = _data("bad_records", VAL), _data("bad_records", "TextVQA_Rosetta_OCR_v0.2_val.json")
    n_images = df.filter(pl.col("kind") == "image").height
    assert n_images == 3
    assert df.height == len(entries) + n_images + sum(len(e["ocr_info"]) for e in ocr)


def test_detection_claims_captions_files_and_leaves_the_ocr_file_to_textvqa(claims_on_other_fixtures):
    for folder, name in (("good", TRAIN), ("bad_records", VAL), ("test_split", TEST)):
        assert detect_format(TC / folder / name) == "textcaps", (folder, name)
    assert detect_format(TC / "good" / OCR) == "textvqa"
    assert claims_on_other_fixtures("textcaps", TC) == []


def test_layout_keeps_the_ocr_file_as_a_companion_and_versions_it(tmp_path, load):
    root = tmp_path / "textcaps_ds"
    (root / "images" / "train_images").mkdir(parents=True)
    for name in (TRAIN, OCR):
        shutil.copy(TC / "good" / name, root / name)
    layout = read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == [TRAIN]
    assert [layout.source_name(p) for p in layout.companions] == [OCR]
    assert load_dataset(layout, 2).height == load("good", TRAIN).height
    before = dataset_version(layout)
    (root / OCR).write_text(json.dumps({"data": _data("good", OCR)[:1]}))
    assert dataset_version(read_layout(root)) != before


def test_absent_or_unreadable_ocr_file(tmp_path):
    shutil.copy(TC / "good" / TRAIN, tmp_path / TRAIN)
    df = load_textcaps(tmp_path / TRAIN, TRAIN)
    assert set(df["kind"]) == {"image", "caption"} and df["reject_reason"].null_count() == df.height
    (tmp_path / OCR).write_bytes(b'{"data": [')
    bad = load_textcaps(tmp_path / TRAIN, TRAIN).filter(pl.col("reject_reason").is_not_null())
    assert bad.select("record_id", "reject_reason").rows() == [(f"{TRAIN}#ocr/file", "malformed_file")]


@pytest.mark.parametrize("content, reason", [(b"", "malformed_file"), (b"[]", "unknown_format"),
                                             (b'{"data": {}}', "unknown_format"), (b'{"data": [', "malformed_file")])
def test_unreadable_captions_file_is_one_row(tmp_path, content, reason):
    (tmp_path / TRAIN).write_bytes(content)
    assert load_textcaps(tmp_path / TRAIN, TRAIN).select("record_id", "reject_reason").rows() == [(f"{TRAIN}#file", reason)]

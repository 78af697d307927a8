"""The localized_narratives loader on small files in the official on-disk format (JSONL)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.loaders.localized_narratives import image_key, load_localized_narratives

DATA = Path(__file__).parent.parent / "data" / "loaders"
LN = DATA / "localized_narratives"
COCO = "coco_val_localized_narratives.jsonl"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str) -> pl.DataFrame:
        return loaded(load_localized_narratives, LN / folder / name, f"{folder}/{name}", "localized_narratives")
    return run


def test_coco_narratives_give_one_caption_per_line_and_coco_2017_keys(load):
    df = load("good", COCO)
    lines = [json.loads(x) for x in (LN / "good" / COCO).read_text().splitlines()]
    s = f"good/{COCO}"
    assert df.height == 3 + 2 and df["reject_reason"].null_count() == df.height
    assert df.filter(pl.col("kind") == "image").select("record_id", "image_key").rows() == [
        (f"{s}#image/val2017/000000137576.jpg", "val2017/000000137576.jpg"),
        (f"{s}#image/val2017/000000000025.jpg", "val2017/000000000025.jpg")]
    caps = df.filter(pl.col("kind") == "caption")
    assert caps["record_id"].to_list() == [f"{s}#caption/{n}" for n in (1, 2, 3)]
    assert caps["text"].to_list() == [x["caption"].strip() for x in lines]
    assert caps["image_key"].to_list() == ["val2017/000000137576.jpg"] * 2 + ["val2017/000000000025.jpg"]
    assert set(df["kind"]) == {"image", "caption"}  # traces give no boxes


def test_image_keys_per_dataset(load):
    df = load("good", "mixed_captions.jsonl")
    assert df["reject_reason"].null_count() == df.height
    assert df.filter(pl.col("kind") == "caption")["image_key"].to_list() == [
        "validation/0a1b2c3d4e5f6789.jpg", "flickr30k-images/1000092795.jpg",
        "images/validation/ADE_val_00000001.jpg", "train/000002b66c9c498e.jpg"]
    assert image_key("mscoco_train2017", "9") == "train2017/000000000009.jpg"
    assert image_key("ADE20k_train", "ADE_train_00000001") == "images/training/ADE_train_00000001.jpg"
    assert image_key("open_images_test", "ab") == "test/ab.jpg"
    assert image_key("pascal_voc", "1") is None and image_key("mscoco_val2017", "x1") is None


def test_bad_records_are_rejected_one_row_each(load):
    df = load("bad_records", COCO)
    s = f"bad_records/{COCO}"
    rejected = dict(df.filter(pl.col("reject_reason").is_not_null()).select("record_id", "reject_detail").rows())
    assert rejected.pop(f"{s}#line/3").startswith("line 3: invalid JSON")
    assert rejected == {
        f"{s}#line/4": "line 4 is a string, not an object",
        f"{s}#caption/5": "caption is missing or empty",
        f"{s}#caption/6": "dataset_id 'mscoco_val2017' (image_id 'abc') has no known image layout",
        f"{s}#caption/7": "image_id '../../etc/passwd' is not a plain file name",
        f"{s}#caption/8": "dataset_id 'pascal_voc' (image_id '2007_000027') has no known image layout",
        f"{s}#caption/9": "dataset_id is missing",
        f"{s}#caption/11": "caption is an array, not a string"}
    reasons = dict(df.select("record_id", "reject_reason").rows())
    assert reasons[f"{s}#line/3"] == "malformed_file" and reasons[f"{s}#line/4"] == "invalid_record"
    ok = df.filter(pl.col("reject_reason").is_null())
    assert ok.select("record_id", "image_key").rows() == [
        (f"{s}#image/val2017/000000137576.jpg", "val2017/000000137576.jpg"),
        (f"{s}#caption/1", "val2017/000000137576.jpg"),
        (f"{s}#image/val2017/000000000025.jpg", "val2017/000000000025.jpg"),
        (f"{s}#caption/10", "val2017/000000000025.jpg")]
    assert df.filter(pl.col("image_key").str.contains("..", literal=True)).height == 0
    n_lines = sum(1 for x in (LN / "bad_records" / COCO).read_text().splitlines() if x.strip())
    assert df.height == n_lines + 2


def test_detection_beats_the_records_claim_and_takes_nothing_else(tmp_path, claims_on_other_fixtures):
    for folder, name in (("good", COCO), ("good", "mixed_captions.jsonl"), ("bad_records", COCO)):
        p = LN / folder / name
        assert detect_format(p) == "localized_narratives"
        claims = {n: ld.detect(p, p.read_bytes()[: registry.HEAD_BYTES]) for n, ld in registry.available().items()
                  if ld.detect}
        assert claims["localized_narratives"] == 2 and claims["records"] == 1
        assert sorted(claims.values())[-2] < 2
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"image": "a.jpg", "captions": ["a cat"]}))
    assert detect_format(records) == "records"
    assert claims_on_other_fixtures("localized_narratives", LN) == []


def test_layout_reads_a_localized_narratives_folder(tmp_path, load):
    root = tmp_path / "ln_ds"
    (root / "images" / "val2017").mkdir(parents=True)
    shutil.copy(LN / "good" / COCO, root / COCO)
    layout = read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == [COCO]
    assert load_dataset(layout, 2).height == load("good", COCO).height


@pytest.mark.parametrize("content", [b"", b"\n \n", b"\xff\xfe{}\n"])
def test_unreadable_file_is_one_row(tmp_path, content):
    (tmp_path / COCO).write_bytes(content)
    assert load_localized_narratives(tmp_path / COCO, COCO).select("record_id", "reject_reason").rows() == [
        (f"{COCO}#file", "malformed_file")]

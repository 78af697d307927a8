"""The tallyqa loader on small files in the official on-disk format (one JSON list per split)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.loaders.tallyqa import load_tallyqa

DATA = Path(__file__).parent.parent / "data" / "loaders"
TQ = DATA / "tallyqa"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str) -> pl.DataFrame:
        return loaded(load_tallyqa, TQ / folder / name, f"{folder}/{name}", "tallyqa")
    return run


def _entries(folder: str, name: str) -> list:
    return json.loads((TQ / folder / name).read_text(encoding="utf-8"))


def test_good_file_gives_images_and_count_qa(load):
    df = load("good", "test.json")
    entries = _entries("good", "test.json")
    assert dict(df.group_by("kind").len().rows()) == {"image": 4, "qa": len(entries)}
    assert df["reject_reason"].null_count() == df.height
    images = df.filter(pl.col("kind") == "image")
    assert images.select("record_id", "image_key").rows() == [
        ("good/test.json#image/92410408", "VG_100K_2/2410408.jpg"),
        ("good/test.json#image/9", "train2014/COCO_train2014_000000000009.jpg"),
        ("good/test.json#image/42", "val2014/COCO_val2014_000000000042.jpg"),
        ("good/test.json#image/90000001", "VG_100K/1.jpg")]
    qa = df.filter(pl.col("kind") == "qa")
    assert qa.select("record_id", "image_key", "text", "answer").rows() == [
        (f"good/test.json#qa/{e['question_id']}", e["image"], e["question"], str(e["answer"])) for e in entries]
    assert "0" in qa["answer"].to_list()  # a count of zero is an answer


def test_bad_records_are_rejected_one_row_each(load):
    df = load("bad_records", "train.json")
    s = "bad_records/train.json"
    assert {k: v for k, v in df.select("record_id", "reject_reason").rows() if v} == {
        f"{s}#qa/2": "invalid_record",  # answer "3"
        f"{s}#qa/3": "invalid_record",  # answer -1
        f"{s}#qa/1@3": "duplicate_record_id",
        f"{s}#qa/4": "unsafe_path",  # ../../etc/passwd
        f"{s}#qa/5": "invalid_record",  # blank question
        f"{s}#qa/6": "invalid_record",  # image_id 90000001 with another path
        f"{s}#qa/@7": "invalid_record",  # a string entry
        f"{s}#qa/@8": "invalid_record",  # question_id "7"
        f"{s}#qa/9": "invalid_record",  # no image
    }
    assert df.filter(pl.col("image_key").str.contains("..", literal=True)).height == 0
    assert df.filter(pl.col("record_id") == f"{s}#qa/8").select("answer", "reject_reason").row(0) == ("1", None)
    n_images = df.filter(pl.col("kind") == "image").height
    assert n_images == 4
    assert df.height == len(_entries("bad_records", "train.json")) + n_images


def test_detection_claims_tallyqa_files_only(claims_on_other_fixtures):
    for folder, name in (("good", "test.json"), ("bad_records", "train.json")):
        assert detect_format(TQ / folder / name) == "tallyqa"
    assert claims_on_other_fixtures("tallyqa", TQ) == []


def test_layout_reads_the_file_as_a_tallyqa_source(tmp_path, load):
    root = tmp_path / "tally_ds"
    (root / "images").mkdir(parents=True)
    shutil.copy(TQ / "good" / "test.json", root / "test.json")
    layout = read_layout(root)
    assert [(layout.source_name(p), registry.detect(p).format) for p, _ in layout.sources] == [("test.json", "tallyqa")]
    assert list(layout.companions) == []
    assert load_dataset(layout, 2).height == load("good", "test.json").height


@pytest.mark.parametrize("content, reason", [(b"", "malformed_file"), (b"[{", "malformed_file"),
                                             (b'{"questions": []}', "unknown_format"), (b"[]", None)])
def test_unreadable_or_empty_file(tmp_path, content, reason):
    (tmp_path / "train.json").write_bytes(content)
    rows = load_tallyqa(tmp_path / "train.json", "train.json").select("record_id", "reject_reason").rows()
    assert rows == ([("train.json#file", reason)] if reason else [])

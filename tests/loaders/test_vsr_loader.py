"""The vsr loader on small files in the official on-disk format (VSR JSONL)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.loaders.vsr import load_vsr

DATA = Path(__file__).parent.parent / "data" / "loaders"
VSR = DATA / "vsr"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str) -> pl.DataFrame:
        return loaded(load_vsr, VSR / folder / name, f"{folder}/{name}", "vsr")
    return run


def test_good_file_gives_a_yes_no_qa_per_statement_and_one_image_row_per_image(load):
    df = load("good", "train.jsonl")
    lines = [json.loads(x) for x in (VSR / "good" / "train.jsonl").read_text().splitlines()]
    s = "good/train.jsonl"
    assert df.height == len(lines) + 3 and df["reject_reason"].null_count() == df.height
    images = df.filter(pl.col("kind") == "image")
    assert images.select("record_id", "image_key").rows() == [
        (f"{s}#image/{i}", i) for i in ("000000085637.jpg", "000000119360.jpg", "000000080336.jpg")]
    qa = df.filter(pl.col("kind") == "qa")
    assert qa["record_id"].to_list() == [f"{s}#qa/{n}" for n in (1, 2, 3, 4)]
    assert qa["text"].to_list() == [f"Is this true: {x['caption']}" for x in lines]
    assert qa["answer"].to_list() == ["yes", "no", "yes", "no"]
    assert qa["image_key"].to_list() == [x["image"] for x in lines]
    assert df.filter(pl.col("kind") == "caption").height == 0


def test_bad_records_are_rejected_one_row_each(load):
    df = load("bad_records", "dev.jsonl")
    s = "bad_records/dev.jsonl"
    assert {k: v for k, v in df.select("record_id", "reject_reason").rows() if v} == {
        f"{s}#line/3": "malformed_file", f"{s}#line/4": "invalid_record",
        f"{s}#qa/5": "invalid_record", f"{s}#qa/6": "invalid_record", f"{s}#qa/7": "invalid_record",
        f"{s}#qa/8": "unsafe_path", f"{s}#qa/9": "invalid_record", f"{s}#qa/10": "invalid_record",
        f"{s}#qa/11": "invalid_record"}
    details = dict(df.filter(pl.col("reject_reason").is_not_null()).select("record_id", "reject_detail").rows())
    assert details[f"{s}#line/4"] == "line 4 is an array, not an object"
    assert details[f"{s}#qa/5"] == "caption is missing or empty"
    assert details[f"{s}#qa/6"] == "label 2 is not 0/1 (false/true)"
    assert details[f"{s}#qa/7"] == "label True is not 0/1 (false/true)"
    assert details[f"{s}#qa/9"] == "image is missing"
    assert details[f"{s}#qa/10"] == "caption is an array, not a string"
    assert details[f"{s}#qa/11"] == "label is missing"
    ok = df.filter((pl.col("kind") == "qa") & pl.col("reject_reason").is_null())
    assert ok.select("record_id", "answer").rows() == [(f"{s}#qa/1", "yes"), (f"{s}#qa/12", "yes")]
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == [
        "000000085637.jpg", "000000119360.jpg", "000000080336.jpg"]
    assert df.filter(pl.col("image_key").str.contains("..", literal=True)).height == 0
    n_lines = sum(1 for x in (VSR / "bad_records" / "dev.jsonl").read_text().splitlines() if x.strip())
    assert df.height == n_lines + 3


def test_detection_beats_the_records_claim_and_takes_nothing_else(tmp_path, claims_on_other_fixtures):
    for folder, name in (("good", "train.jsonl"), ("bad_records", "dev.jsonl")):
        p = VSR / folder / name
        assert detect_format(p) == "vsr"
        claims = {n: ld.detect(p, p.read_bytes()[: registry.HEAD_BYTES]) for n, ld in registry.available().items()
                  if ld.detect}
        assert claims["vsr"] == 2 and claims["records"] == 1
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"image": "a.jpg", "captions": ["a cat"], "qa": [{"question": "q", "answer": "a"}]}))
    assert detect_format(records) == "records"
    assert claims_on_other_fixtures("vsr", VSR) == []
    shutil.copy(VSR / "good" / "train.jsonl", tmp_path / "train.json")
    assert registry.available()["vsr"].detect(tmp_path / "train.json", b"") == 0


def test_layout_reads_a_vsr_folder(tmp_path, load):
    root = tmp_path / "vsr_ds"
    (root / "images").mkdir(parents=True)
    shutil.copy(VSR / "good" / "train.jsonl", root / "train.jsonl")
    layout = read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == ["train.jsonl"]
    assert detect_format(root / "train.jsonl") == "vsr"
    assert load_dataset(layout, 2).height == load("good", "train.jsonl").height


@pytest.mark.parametrize("content", [b"", b"\n  \n", b"\xff\xfe{}\n"])
def test_unreadable_file_is_one_row(tmp_path, content):
    (tmp_path / "test.jsonl").write_bytes(content)
    assert load_vsr(tmp_path / "test.jsonl", "test.jsonl").select("record_id", "reject_reason").rows() == [
        ("test.jsonl#file", "malformed_file")]

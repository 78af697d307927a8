"""The visual7w loader on small files in the release layout (dataset_v7w_telling.json / _pointing.json)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders.visual7w import load_visual7w

DATA = Path(__file__).parent.parent / "data" / "loaders" / "visual7w"
TELLING, POINTING = "dataset_v7w_telling.json", "dataset_v7w_pointing.json"


@pytest.fixture
def load(loaded):
    """load(folder, name): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str) -> pl.DataFrame:
        return loaded(load_visual7w, DATA / folder / name, f"{folder}/{name}", "visual7w")
    return run


def _images(folder: str, name: str) -> list:
    return json.loads((DATA / folder / name).read_text())["images"]


def test_telling_gives_images_and_multiple_choice_qa(load):
    df = load("good", TELLING)
    images = _images("good", TELLING)
    pairs = [q for i in images for q in i["qa_pairs"]]
    assert dict(df.group_by("kind").len().rows()) == {"image": len(images), "qa": len(pairs)}
    assert df["reject_reason"].null_count() == df.height
    assert df.filter(pl.col("kind") == "image").select("record_id", "image_key").rows() == [
        (f"good/{TELLING}#image/{i['image_id']}", i["filename"]) for i in images]
    qa = df.filter(pl.col("kind") == "qa")
    assert qa["record_id"].to_list() == [f"good/{TELLING}#qa/{q['qa_id']}" for q in pairs]
    assert qa.select("text", "answer").rows()[0] == ("What color is the bus? Options: Blue, Green, Red, White.", "Red")
    assert qa["image_key"].to_list() == ["v7w_2354786.jpg", "v7w_2354786.jpg", "v7w_2374995.jpg"]


def test_pointing_options_are_pixel_boxes(load):
    qa = load("good", POINTING).filter(pl.col("kind") == "qa").row(0, named=True)
    assert qa["text"] == ("Which object is the man sitting on? Options: [10, 15, 40, 30], [10, 300, 60, 20], "
                          "[120, 200, 80, 60], [300, 50, 25, 100].")
    assert qa["answer"] == "[120, 200, 80, 60]" and qa["reject_reason"] is None


def test_bad_records_are_rejected_one_row_each(load):
    df = load("bad_records", POINTING)
    s = f"bad_records/{POINTING}"
    assert {k: v for k, v in df.select("record_id", "reject_reason").rows() if v} == {
        f"{s}#qa/1@0.1": "duplicate_record_id",
        f"{s}#qa/@0.2": "invalid_record",  # a string
        f"{s}#qa/@0.3": "invalid_record",  # no qa_id
        f"{s}#qa/2": "invalid_record",  # blank question
        f"{s}#qa/3": "invalid_record",  # empty answer
        f"{s}#qa/4": "invalid_record",  # box 99 unknown, box 702 width "3"
        f"{s}#image/@1": "invalid_record",  # a string
        f"{s}#image/@2": "invalid_record",  # image_id -5
        f"{s}#qa/6": "invalid_record",  # ... and its QA
        f"{s}#image/7": "unsafe_path",  # ../../etc/passwd
        f"{s}#qa/7": "unsafe_path",
        f"{s}#image/1@4": "duplicate_record_id",
        f"{s}#qa/8": "duplicate_record_id",
        f"{s}#image/9": "invalid_record",  # no qa_pairs
    }
    rows = {r["record_id"]: r for r in df.iter_rows(named=True)}
    assert (rows[f"{s}#qa/5"]["text"], rows[f"{s}#qa/5"]["answer"]) == ("Why choices odd?", "Because")
    assert df.filter(pl.col("image_key").str.contains("..", literal=True)).height == 0
    images = _images("bad_records", POINTING)
    n_pairs = sum(len(i["qa_pairs"]) for i in images if isinstance(i, dict) and isinstance(i.get("qa_pairs"), list))
    assert df.height == len(images) + n_pairs


@pytest.mark.parametrize("content, reason", [(b"", "malformed_file"), (b'{"images": [', "malformed_file"),
                                             (b"[]", "unknown_format"), (b'{"images": {}}', "unknown_format"),
                                             (b'{"images": []}', None)])
def test_unreadable_or_empty_file(tmp_path, content, reason):
    (tmp_path / TELLING).write_bytes(content)
    rows = load_visual7w(tmp_path / TELLING, TELLING).select("record_id", "reject_reason").rows()
    assert rows == ([(f"{TELLING}#file", reason)] if reason else [])


def test_detection_claims_visual7w_files_only(detection_claims, claims_on_other_fixtures):
    for folder, name in (("good", TELLING), ("good", POINTING), ("bad_records", POINTING)):
        claims = detection_claims(DATA / folder / name)
        assert claims["visual7w"] == 2 and sorted(claims.values())[-2] < 2, (folder, name)
    assert claims_on_other_fixtures("visual7w", DATA) == []


def test_layout_reads_both_files_as_visual7w_sources(tmp_path, load):
    root = tmp_path / "v7w_ds"
    shutil.copytree(DATA / "good", root)
    (root / "images").mkdir()
    layout = read_layout(root)
    assert sorted(layout.source_name(p) for p, _ in layout.sources) == [POINTING, TELLING]
    assert load_dataset(layout, 2).height == load("good", TELLING).height + load("good", POINTING).height

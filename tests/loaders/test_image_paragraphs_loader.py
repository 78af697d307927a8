"""The image_paragraphs loader on small files in the official on-disk format (paragraphs_v1.json + splits)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import dataset_version, load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.loaders.image_paragraphs import SPLIT_FILES, load_image_paragraphs

DATA = Path(__file__).parent.parent / "data" / "loaders" / "image_paragraphs"
P = "paragraphs_v1.json"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str = P) -> pl.DataFrame:
        return loaded(load_image_paragraphs, DATA / folder / name, f"{folder}/{name}", "image_paragraphs")
    return run


def test_good_file_gives_an_image_and_a_caption_per_paragraph(load):
    df = load("good")
    entries = json.loads((DATA / "good" / P).read_text(encoding="utf-8"))
    assert dict(df.group_by("kind").len().rows()) == {"image": 4, "caption": 4}
    assert df["reject_reason"].null_count() == df.height
    images = df.filter(pl.col("kind") == "image")
    assert images["record_id"].to_list() == [f"good/{P}#image/{e['image_id']}" for e in entries]
    assert images["image_key"].to_list() == [
        "VG_100K_2/2388203.jpg", "VG_100K/2356347.jpg", "VG_100K_2/2412620.jpg", "VG_100K/2346046.jpg"]
    assert images["width"].null_count() == 4  # the file gives no sizes
    captions = df.filter(pl.col("kind") == "caption")
    assert captions["record_id"].to_list() == [f"good/{P}#caption/{e['image_id']}" for e in entries]
    assert captions["image_key"].to_list() == images["image_key"].to_list()
    assert captions["text"][0] == ("A white plate sits on a wooden table. The plate holds a slice of pizza. "
                                   "A glass of water is next to the plate.")
    assert captions["text"][1] == ("Two men are standing on a tennis court. One man is holding a racket. "
                                   "The court is green and the lines are white.")


def test_bad_records_are_rows_with_reasons(load):
    df = load("bad_records")
    entries = json.loads((DATA / "bad_records" / P).read_text(encoding="utf-8"))
    src = f"bad_records/{P}"
    captions = df.filter(pl.col("kind") == "caption")
    assert captions.height == len(entries)  # every entry accounted for
    got = {r["record_id"].split("#", 1)[1]: (r["reject_reason"], r["image_key"]) for r in captions.iter_rows(named=True)}
    assert got == {
        "caption/1": (None, "VG_100K/1.jpg"),
        "caption/@1": ("invalid_record", None),  # not an object
        "caption/@2": ("invalid_record", None),  # string image_id
        "caption/3": ("invalid_record", None),  # no url
        "caption/4": ("invalid_record", "VG_100K/4.jpg"),  # blank paragraph
        "caption/5": ("invalid_record", "VG_100K/5.jpg"),  # no paragraph
        "caption/1@6": (None, "VG_100K/1.jpg"),  # a second paragraph of image 1: kept
        "caption/1@7": ("invalid_record", "VG_100K/1.jpg"),  # url names another file
        "caption/6": ("unsafe_path", None),
        "caption/@9": ("invalid_record", None),  # boolean image_id
    }
    images = df.filter(pl.col("kind") == "image")
    assert images["record_id"].to_list() == [f"{src}#image/{i}" for i in (1, 4, 5)]
    assert images["reject_reason"].null_count() == 3
    assert df.height == len(entries) + 3


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "malformed_file"),
    (b'{"paragraphs": []}', "unknown_format"),
    (b"\xff\xfe[]", "malformed_file"),
])
def test_unreadable_files_are_one_row(tmp_path, content, reason):
    path = tmp_path / P
    path.write_bytes(content)
    df = load_image_paragraphs(path, P)
    assert df.rows(named=True)[0]["record_id"] == f"{P}#file"
    assert df["reject_reason"].to_list() == [reason]


def test_truncated_file_and_empty_list(load):
    assert load("malformed")["reject_reason"].to_list() == ["malformed_file"]
    direct = load("good", "val_split.json")  # a split file loaded on its own, though its paragraphs are there
    assert direct["reject_reason"].to_list() == ["missing_companion"]
    assert "not loaded on its own" in direct["reject_detail"][0]


def test_empty_list_gives_no_rows(tmp_path):
    (tmp_path / P).write_text("[]", encoding="utf-8")
    assert load_image_paragraphs(tmp_path / P, P).height == 0


def test_split_file_alone_is_one_missing_companion_row(load):
    df = load("split_only", "train_split.json")
    assert df.rows(named=True)[0]["record_id"] == "split_only/train_split.json#file"
    assert df["reject_reason"].to_list() == ["missing_companion"]


def test_detection_claims_paragraphs_and_split_files_only(claims_on_other_fixtures):
    for name in (P, *SPLIT_FILES):
        assert detect_format(DATA / "good" / name) == "image_paragraphs"
    assert claims_on_other_fixtures("image_paragraphs", DATA) == []


def test_ids_named_like_splits_but_not_int_lists_are_not_claimed(tmp_path):
    path = tmp_path / "train_split.json"
    path.write_text('{"images": [], "annotations": []}', encoding="utf-8")
    assert registry.get("image_paragraphs").detect(path, path.read_bytes()) == 0


def test_split_files_are_companions_in_a_dataset(tmp_path):
    root = tmp_path / "paras"
    shutil.copytree(DATA / "good", root)
    layout = read_layout(root)
    assert [p.name for p, _ in layout.sources] == [P]
    assert sorted(p.name for p in layout.companions) == sorted(SPLIT_FILES)
    version = dataset_version(layout)
    records = load_dataset(layout, n_shards=2)
    assert records.height == 8 and records["reject_reason"].null_count() == 8
    (root / "test_split.json").write_text("[2346046, 1]", encoding="utf-8")
    assert dataset_version(read_layout(root)) != version  # a split file is part of the version


def test_split_file_without_paragraphs_is_a_source_with_one_reject(tmp_path):
    root = tmp_path / "splits"
    shutil.copytree(DATA / "split_only", root)
    layout = read_layout(root)
    assert [p.name for p, _ in layout.sources] == ["train_split.json"] and not layout.companions
    records = load_dataset(layout, n_shards=1)
    assert records["reject_reason"].to_list() == ["missing_companion"]

"""The llavar loader on small files in the layout Instructify's reference reads (finetune_meta.json +
llavar_ocr_results.jsonl): images, alt-text captions, OCR lines with boxes, every bad entry a row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format
from visit_assets.lib.metadata.loaders.llavar import OCR_FILE, load_llavar

DATA = Path(__file__).parent.parent / "data" / "loaders" / "llavar"
META = "finetune_meta.json"


@pytest.fixture
def load(loaded):
    def run(path: Path = DATA / META, source: str = META) -> pl.DataFrame:
        return loaded(load_llavar, path, source, "llavar")
    return run


def _by_id(df: pl.DataFrame) -> dict[str, dict]:
    return {r["record_id"]: r for r in df.iter_rows(named=True)}


def test_images_captions_and_ocr_lines_with_their_boxes(load):
    rows = _by_id(load())
    image = rows[f"{META}#image/000000000001.jpg"]
    assert (image["image_key"], image["width"], image["height"], image["reject_reason"]) == \
        ("000000000001.jpg", 400, 600, None)
    assert rows[f"{META}#caption/000000000001.jpg"]["text"] == "Movie poster for THE LAST TRAIN"
    assert f"{META}#caption/000000000002.jpg" not in rows  # an empty alt text is no caption
    pixels, fractions = rows[f"{META}#ocr/000000000001.jpg/0"], rows[f"{META}#ocr/000000000001.jpg/1"]
    assert (pixels["text"], pixels["bbox_x"], pixels["bbox_w"], pixels["bbox_norm"]) == ("THE LAST", 40.0, 320.0, False)
    assert fractions["bbox_norm"] is True and fractions["bbox_h"] == pytest.approx(0.1)
    assert rows[f"{META}#ocr/000000000002.jpg/0"]["image_key"] == "000000000002.jpg"


def test_every_bad_entry_and_line_is_a_row_with_its_reason(load):
    df = load()
    reasons = dict(df.filter(pl.col("reject_reason").is_not_null()).select("record_id", "reject_reason").iter_rows())
    assert reasons == {
        f"{META}#image/000000000001.jpg@2": "duplicate_record_id",
        f"{META}#image/../outside.jpg": "unsafe_path",
        f"{META}#image/@4": "invalid_record",  # no llavar_id
        f"{META}#image/@5": "invalid_record",  # not an object
        f"{META}#ocr/000000000001.jpg/2": "invalid_record",  # empty text
        f"{META}#ocr/000000000001.jpg/3": "invalid_record",  # two numbers
        f"{META}#ocr/000000000099.jpg/0": "unknown_image_id",
        f"{META}#ocr/@4": "invalid_record",  # not JSON
        f"{META}#ocr/@5": "invalid_record",  # ocr_results not a list
    }
    # rows == entries (6: 2 usable images, 4 rejects) + 1 caption + OCR results (4 + 1 + 1) + bad lines (2)
    assert df.height == 6 + 1 + 6 + 2


def test_two_meta_files_share_one_ocr_file_and_nothing_is_counted_twice(tmp_path, load):
    shutil.copytree(DATA, tmp_path / "llavar")
    pretrain = tmp_path / "llavar" / "pretrain_meta.json"
    pretrain.write_text(json.dumps([{"llavar_id": "000000000099.jpg", "TEXT": "a sign", "WIDTH": 10, "HEIGHT": 10}]))
    fine = load(tmp_path / "llavar" / META)
    pre = load(pretrain, "pretrain_meta.json")
    assert "000000000099.jpg" not in "".join(fine["record_id"])  # the other file's image
    assert pre.filter(pl.col("kind") == "ocr")["text"].to_list() == ["nobody's"]
    assert pre["reject_reason"].null_count() == pre.height  # bad lines are the finetune file's to report


def test_detection_and_the_ocr_file_as_a_companion(tmp_path, claims_on_other_fixtures):
    assert detect_format(DATA / META) == "llavar" and detect_format(DATA / OCR_FILE) == "llavar"
    assert claims_on_other_fixtures("llavar", DATA) == []
    root = tmp_path / "ds"
    shutil.copytree(DATA, root / "metadata")
    layout = read_layout(root)
    assert [p.name for p, _ in layout.sources] == [META] and [p.name for p in layout.companions] == [OCR_FILE]
    assert load_dataset(layout, n_shards=1).height == 15
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(DATA / OCR_FILE, alone / OCR_FILE)
    assert load_llavar(alone / OCR_FILE, OCR_FILE)["reject_reason"].to_list() == ["missing_companion"]

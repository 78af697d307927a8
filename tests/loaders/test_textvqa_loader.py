"""The textvqa loader on small files in the official on-disk format (questions + Rosetta OCR)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import dataset_version, load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.loaders.common import most_common
from visit_assets.lib.metadata.loaders.textvqa import load_textvqa

DATA = Path(__file__).parent.parent / "data" / "loaders" / "textvqa"
Q = "TextVQA_0.5.1_train.json"
OCR = "TextVQA_Rosetta_OCR_v0.2_train.json"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str = Q) -> pl.DataFrame:
        return loaded(load_textvqa, DATA / folder / name, f"{folder}/{name}", "textvqa")
    return run


def _data(folder: str, name: str) -> list:
    return json.loads((DATA / folder / name).read_text(encoding="utf-8"))["data"]


def test_good_split_gives_images_qa_and_one_ocr_row_per_token(load):
    df = load("good")
    questions, ocr = _data("good", Q), _data("good", OCR)
    image_ids = list(dict.fromkeys(q["image_id"] for q in questions))
    n_tokens = sum(len(e["ocr_info"]) for e in ocr)
    assert dict(df.group_by("kind").len().rows()) == {"image": len(image_ids), "qa": len(questions), "ocr": n_tokens}
    assert df.height == len(questions) + len(image_ids) + n_tokens
    assert df["reject_reason"].null_count() == df.height
    images = df.filter(pl.col("kind") == "image")
    assert images["image_key"].to_list() == [f"train_images/{i}.jpg" for i in image_ids]
    sizes = {q["image_id"]: (q["image_width"], q["image_height"]) for q in questions}
    assert images.select("width", "height").rows() == [sizes[i] for i in image_ids]
    qa = df.filter(pl.col("kind") == "qa")
    assert qa["text"].to_list() == [q["question"] for q in questions]
    assert qa["answer"].to_list() == ["dakota", "copenhagen", "ale", "bowmore islay", "10 years", "22", "5:40"]
    tokens = df.filter(pl.col("kind") == "ocr")
    first = ocr[0]["ocr_info"][0]
    row = tokens.row(0, named=True)
    assert (row["record_id"], row["image_key"], row["text"]) == (
        f"good/{Q}#ocr/{ocr[0]['image_id']}/0", f"train_images/{ocr[0]['image_id']}.jpg", first["word"])
    box = first["bounding_box"]
    assert (row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"], row["bbox_norm"]) == (
        box["top_left_x"], box["top_left_y"], box["width"], box["height"], True)


def test_most_common_answer_ties_go_to_the_first():
    assert most_common(["b", "a", "a", "b", "c"]) == "b"
    assert most_common([" x ", "y", "x"]) == "x"
    assert most_common(["", "  ", None]) is None and most_common(None) is None


def test_detection_claims_both_files():
    for folder, name in (("good", Q), ("good", OCR), ("bad_records", Q), ("test_split", "TextVQA_0.5.1_test.json"),
                         ("ocr_only", "TextVQA_Rosetta_OCR_v0.2_val.json")):
        assert detect_format(DATA / folder / name) == "textvqa", (folder, name)
    head = (DATA / "good" / Q).read_bytes()[: registry.HEAD_BYTES]
    assert {n: ld.detect(DATA / "good" / Q, head) for n, ld in registry.available().items() if ld.detect}["textvqa"] == 2


def test_layout_keeps_the_ocr_file_as_a_companion_and_versions_it(tmp_path, load):
    root = tmp_path / "textvqa_ds"
    (root / "images" / "train_images").mkdir(parents=True)
    for name in (Q, OCR):
        shutil.copy(DATA / "good" / name, root / name)
    layout = read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == [Q]
    assert [layout.source_name(p) for p in layout.companions] == [OCR]
    assert load_dataset(layout, 2).height == load("good").height
    before = dataset_version(layout)
    (root / OCR).write_text(json.dumps({"data": _data("good", OCR)[:1]}))
    assert dataset_version(read_layout(root)) != before


def test_absent_ocr_file_adds_no_rows_and_keeps_the_qa(tmp_path):
    shutil.copy(DATA / "good" / Q, tmp_path / Q)
    df = load_textvqa(tmp_path / Q, Q)
    assert set(df["kind"]) == {"image", "qa"} and df["reject_reason"].null_count() == df.height


def test_unreadable_ocr_file_is_one_row(tmp_path):
    shutil.copy(DATA / "good" / Q, tmp_path / Q)
    (tmp_path / OCR).write_bytes(b'{"data": [{"image_id": "a", ')
    df = load_textvqa(tmp_path / Q, Q)
    bad = df.filter(pl.col("reject_reason").is_not_null())
    assert bad.select("record_id", "reject_reason").rows() == [(f"{Q}#ocr/file", "malformed_file")]
    assert bad["reject_detail"][0].startswith(f"OCR file {OCR}: ")


def test_test_split_has_no_answers_and_test_images(load):
    df = load("test_split", "TextVQA_0.5.1_test.json")
    qa = df.filter(pl.col("kind") == "qa")
    assert set(qa["reject_reason"]) == {"invalid_record"} and qa.height == 2
    assert set(qa["reject_detail"]) == {"no answers: the test split publishes questions only"}
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == ["test_images/00a3d6a1b3a8a4c2.jpg"]


def test_ocr_file_alone_is_one_missing_companion_row(load):
    df = load("ocr_only", "TextVQA_Rosetta_OCR_v0.2_val.json")
    assert df.select("kind", "reject_reason").rows() == [("invalid", "missing_companion")]


def test_bad_records_are_rejected_one_row_each(load):
    df = load("bad_records")
    s = f"bad_records/{Q}"
    assert {k: v for k, v in df.select("record_id", "reject_reason").rows() if v} == {
        f"{s}#qa/@3": "invalid_record",  # question_id "34610" is a string
        f"{s}#qa/34611": "invalid_record",  # empty question
        f"{s}#qa/34604@5": "duplicate_record_id",
        f"{s}#qa/34612": "invalid_record",  # image_id "../../etc/passwd"
        f"{s}#qa/34613": "invalid_record",  # no non-empty answer
        f"{s}#qa/@8": "invalid_record",  # 42, not an object
        f"{s}#ocr/0054c91397f2fe05@2/0": "duplicate_record_id",  # second OCR entry of one image
        f"{s}#ocr/ffffffffffffffff/0": "unknown_image_id",
        f"{s}#ocr/006d10667d17b924/0": "invalid_record",  # empty word
        f"{s}#ocr/@5": "invalid_record",  # no image_id
    }
    assert df.filter(pl.col("image_key").str.contains("..", literal=True)).height == 0
    questions, ocr = _data("bad_records", Q), _data("bad_records", OCR)
    n_images = df.filter(pl.col("kind") == "image").height
    n_tokens = sum(len(e.get("ocr_info") or []) for e in ocr if "image_id" in e) + 1  # + the entry with no image_id
    assert df.height == len(questions) + n_images + n_tokens


@pytest.mark.parametrize("content, reason", [(b"", "malformed_file"), (b"[]", "unknown_format"),
                                             (b'{"data": {}}', "unknown_format")])
def test_unreadable_questions_file_is_one_row(tmp_path, content, reason):
    (tmp_path / Q).write_bytes(content)
    assert load_textvqa(tmp_path / Q, Q).select("record_id", "reject_reason").rows() == [(f"{Q}#file", reason)]

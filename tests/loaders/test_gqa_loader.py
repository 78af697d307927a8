"""The gqa loader on small files in the official on-disk format (questions JSON keyed by question id)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.loaders.gqa import load_gqa

DATA = Path(__file__).parent.parent / "data" / "loaders"
GQA = DATA / "gqa"
GOOD = "val_balanced_questions.json"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str) -> pl.DataFrame:
        return loaded(load_gqa, GQA / folder / name, f"{folder}/{name}", "gqa")
    return run


def test_good_file_gives_one_image_row_per_image_and_one_qa_row_per_question(load):
    df = load("good", GOOD)
    questions = json.loads((GQA / "good" / GOOD).read_text())
    s = f"good/{GOOD}"
    assert df.height == len(questions) + 3 and df["reject_reason"].null_count() == df.height
    images = df.filter(pl.col("kind") == "image")
    assert images.select("record_id", "image_key").rows() == [
        (f"{s}#image/2354786", "images/2354786.jpg"), (f"{s}#image/2375429", "images/2375429.jpg"),
        (f"{s}#image/n161313", "images/n161313.jpg")]
    assert images["width"].null_count() == 3 and images["height"].null_count() == 3
    qa = df.filter(pl.col("kind") == "qa")
    assert qa["record_id"].to_list() == [f"{s}#qa/{qid}" for qid in questions]
    assert qa["text"].to_list() == [q["question"] for q in questions.values()]
    assert qa["answer"].to_list() == ["yes", "pipe", "no", "large", "shirt", "left"]  # the short answer, not fullAnswer
    assert qa["image_key"].to_list() == [f"images/{q['imageId']}.jpg" for q in questions.values()]


def test_test_split_questions_have_no_answers(load):
    df = load("test_split", "test_balanced_questions.json")
    assert dict(df.group_by("kind").len().rows()) == {"image": 1, "qa": 2}
    qa = df.filter(pl.col("kind") == "qa")
    assert set(qa["reject_reason"]) == {"invalid_record"} and qa["answer"].null_count() == 2
    assert set(qa["reject_detail"]) == {"no answer: the test, challenge and submission splits publish questions only"}
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == ["images/n15740.jpg"]


def test_bad_records_are_rejected_one_row_each(load):
    name = "train_balanced_questions.json"
    df = load("bad_records", name)
    s = f"bad_records/{name}"
    assert {k: v for k, v in df.select("record_id", "reject_reason").rows() if v} == {
        f"{s}#qa/{i}": "invalid_record" for i in range(2, 9)}
    details = dict(df.filter(pl.col("reject_reason").is_not_null()).select("record_id", "reject_detail").rows())
    assert details[f"{s}#qa/2"] == "entry is a number, not an object"
    assert details[f"{s}#qa/3"] == "imageId is a number, not a string"
    assert details[f"{s}#qa/4"].startswith("imageId '../../etc/passwd' is not a plain file name")
    assert details[f"{s}#qa/5"] == "question is missing or empty"
    assert details[f"{s}#qa/6"].startswith("no answer")
    assert details[f"{s}#qa/7"] == "imageId is missing"
    assert details[f"{s}#qa/8"] == "answer is an array, not a string"
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == ["images/2354786.jpg", "images/2375429.jpg"]
    assert df.filter(pl.col("image_key").str.contains("..", literal=True)).height == 0
    assert df.height == 8 + 2


def test_detection_claims_gqa_questions_and_nothing_else(claims_on_other_fixtures):
    for folder, name in (("good", GOOD), ("test_split", "test_balanced_questions.json"),
                         ("bad_records", "train_balanced_questions.json")):
        assert detect_format(GQA / folder / name) == "gqa", (folder, name)
        head = (GQA / folder / name).read_bytes()[: registry.HEAD_BYTES]
        claims = {n: ld.detect(GQA / folder / name, head) for n, ld in registry.available().items() if ld.detect}
        assert claims["gqa"] == 2 and sorted(claims.values())[-2] < 2
    assert claims_on_other_fixtures("gqa", GQA) == []


def test_layout_reads_a_gqa_folder(tmp_path, load):
    root = tmp_path / "gqa_ds"
    (root / "images" / "images").mkdir(parents=True)
    shutil.copy(GQA / "good" / GOOD, root / GOOD)
    layout = read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == [GOOD]
    assert detect_format(root / GOOD) == "gqa"
    assert load_dataset(layout, 2).height == load("good", GOOD).height


@pytest.mark.parametrize("content, reason", [(b"", "malformed_file"), (b"{\"1\": {", "malformed_file"),
                                             (b"\xff\xfe{}", "malformed_file"), (b"[]", "unknown_format")])
def test_unreadable_file_is_one_row(tmp_path, content, reason):
    (tmp_path / GOOD).write_bytes(content)
    assert load_gqa(tmp_path / GOOD, GOOD).select("record_id", "reject_reason").rows() == [(f"{GOOD}#file", reason)]


def test_empty_object_has_no_rows(tmp_path):
    (tmp_path / GOOD).write_bytes(b"{}")
    assert load_gqa(tmp_path / GOOD, GOOD).height == 0


def test_scene_graphs_give_sized_images_and_pixel_boxes(load):
    name = "val_sceneGraphs.json"
    df = load("scene_graphs", name)
    s = f"scene_graphs/{name}"
    assert df["reject_reason"].null_count() == df.height and df.height == 3 + 4
    assert df.filter(pl.col("kind") == "image").select("record_id", "image_key", "width", "height").rows() == [
        (f"{s}#image/2354786", "images/2354786.jpg", 500, 333), (f"{s}#image/n161313", "images/n161313.jpg", 640, 480),
        (f"{s}#image/2375429", "images/2375429.jpg", 800, 600)]
    boxes = df.filter(pl.col("kind") == "box")
    assert boxes.select("record_id", "image_key", "label", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "bbox_norm").rows() == [
        (f"{s}#box/2354786/1232124", "images/2354786.jpg", "sky", 0.0, 0.0, 500.0, 120.0, False),
        (f"{s}#box/2354786/1232125", "images/2354786.jpg", "pipe", 310.0, 40.0, 25.0, 200.0, False),
        (f"{s}#box/2354786/1232126", "images/2354786.jpg", "wall", 200.0, 0.0, 300.0, 333.0, False),
        (f"{s}#box/n161313/3045000", "images/n161313.jpg", "man", 12.5, 30.0, 200.0, 400.0, False)]
    assert detect_format(GQA / "scene_graphs" / name) == "gqa"


def test_bad_scene_graph_entries_are_rejected_one_row_each(load):
    name = "train_sceneGraphs.json"
    df = load("bad_scene_graphs", name)
    s = f"bad_scene_graphs/{name}"
    rejected = dict(df.filter(pl.col("reject_reason").is_not_null()).select("record_id", "reject_detail").rows())
    assert rejected == {
        f"{s}#box/2354786/2": "object is a string, not an object",
        f"{s}#box/2354786/3": "name is missing or empty",
        f"{s}#box/2354786/4": "x, y, w, h are not all numbers",
        f"{s}#box/2354786/5": "x, y, w, h are not all numbers",
        f"{s}#image/2375429": "image entry is an array, not an object",
        f"{s}#image/2400000": "objects is an array, not an object",
        f"{s}#image/../x": "imageId '../x' is not a plain file name",
        f"{s}#box/../x/9": "image '../x': imageId '../x' is not a plain file name"}
    assert set(df["reject_reason"].drop_nulls()) == {"invalid_record"}
    assert df.filter(pl.col("reject_reason").is_null())["record_id"].to_list() == [
        f"{s}#image/2354786", f"{s}#box/2354786/1"]
    assert df.filter(pl.col("image_key").str.contains("..", literal=True)).height == 0
    assert df.height == 4 + 5 + 1  # images + objects of the object-valued "objects"
    assert detect_format(GQA / "bad_scene_graphs" / name) == "gqa"

"""The aokvqa loader on small files in the official on-disk format (one JSON list per split)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.loaders.aokvqa import load_aokvqa

DATA = Path(__file__).parent.parent / "data" / "loaders"
AOK = DATA / "aokvqa"
VAL, TRAIN, TEST = "aokvqa_v1p0_val.json", "aokvqa_v1p0_train.json", "aokvqa_v1p0_test.json"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str) -> pl.DataFrame:
        return loaded(load_aokvqa, AOK / folder / name, f"{folder}/{name}", "aokvqa")
    return run


def _entries(folder: str, name: str) -> list:
    return json.loads((AOK / folder / name).read_text(encoding="utf-8"))


def test_good_split_gives_images_mc_qa_and_rationale_captions(load):
    df = load("good", VAL)
    entries = _entries("good", VAL)
    image_ids = list(dict.fromkeys(e["image_id"] for e in entries))
    n_rationales = sum(len(e["rationales"]) for e in entries)
    assert dict(df.group_by("kind").len().rows()) == {"image": len(image_ids), "qa": len(entries), "caption": n_rationales}
    assert df.height == len(image_ids) + len(entries) + n_rationales
    assert df["reject_reason"].null_count() == df.height
    images = df.filter(pl.col("kind") == "image")
    assert images["record_id"].to_list() == [f"good/{VAL}#image/{i}" for i in image_ids]
    assert images["image_key"].to_list() == [f"val2017/{i:012d}.jpg" for i in image_ids]
    assert images["width"].null_count() == images.height  # A-OKVQA gives no sizes
    qa = df.filter(pl.col("kind") == "qa")
    assert qa["record_id"].to_list() == [f"good/{VAL}#qa/{e['question_id']}" for e in entries]
    assert qa["answer"].to_list() == ["cigarette", "thirty", "motorcycle", "safety"]
    assert qa["text"][0] == "What is in the motorcyclist's mouth? Options: toothpick, food, popsicle stick, cigarette."
    assert qa["image_key"][2] == "val2017/000000461751.jpg"
    caps = df.filter(pl.col("kind") == "caption")
    qid = entries[1]["question_id"]
    mine = caps.filter(pl.col("record_id").str.starts_with(f"good/{VAL}#caption/{qid}/"))
    assert mine.select("record_id", "image_key", "text").rows() == [
        (f"good/{VAL}#caption/{qid}/{n}", "val2017/000000081922.jpg", r) for n, r in enumerate(entries[1]["rationales"])]


def test_test_split_has_no_answers_and_test2017_images(load):
    df = load("test_split", TEST)
    qa = df.filter(pl.col("kind") == "qa")
    assert qa.height == 2 and set(qa["reject_reason"]) == {"invalid_record"}
    assert set(qa["reject_detail"]) == {"no answers: the test split publishes questions only"}
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == ["test2017/000000000001.jpg"]
    assert set(df["kind"]) == {"image", "qa"}


def test_bad_records_are_rejected_one_row_each(load):
    df = load("bad_records", TRAIN)
    s = f"bad_records/{TRAIN}"
    assert {k: v for k, v in df.select("record_id", "reject_reason").rows() if v} == {
        f"{s}#caption/aaaaaaaaaaaaaaaaaaaaaa/1": "invalid_record",  # empty rationale
        f"{s}#qa/@1": "invalid_record",  # question_id 12345 is a number
        f"{s}#caption/@1/0": "invalid_record",  # ... and its rationale
        f"{s}#qa/bbbbbbbbbbbbbbbbbbbbbb": "invalid_record",  # blank question
        f"{s}#caption/bbbbbbbbbbbbbbbbbbbbbb/0": "invalid_record",
        f"{s}#qa/aaaaaaaaaaaaaaaaaaaaaa@3": "duplicate_record_id",
        f"{s}#caption/aaaaaaaaaaaaaaaaaaaaaa@3/0": "duplicate_record_id",
        f"{s}#qa/cccccccccccccccccccccc": "invalid_record",  # image_id -3
        f"{s}#qa/eeeeeeeeeeeeeeeeeeeeee": "invalid_record",  # no correct choice, no direct answers
        f"{s}#qa/@7": "invalid_record",  # 42, not an object
        f"{s}#qa/ffffffffffffffffffffff": "invalid_record",  # no image_id
        f"{s}#qa/gggggggggggggggggggggg": "invalid_record",  # image_id true
    }
    rows = {r["record_id"]: r for r in df.iter_rows(named=True)}
    fallback = rows[f"{s}#qa/dddddddddddddddddddddd"]  # correct_choice_idx 7 of 4 options: the direct answers
    assert (fallback["text"], fallback["answer"], fallback["reject_reason"]) == ("How many giraffes?", "2", None)
    assert rows[f"{s}#qa/gggggggggggggggggggggg"]["reject_detail"] == "image_id is a boolean, not an integer"
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == [
        "train2017/000000000009.jpg", "train2017/000000000025.jpg", "train2017/000000000030.jpg"]
    entries = _entries("bad_records", TRAIN)
    n_rationales = sum(len(e["rationales"]) for e in entries
                       if isinstance(e, dict) and isinstance(e.get("rationales"), list))
    assert df.height == len(entries) + 3 + n_rationales


def test_detection_claims_aokvqa_files_only(claims_on_other_fixtures):
    for folder, name in (("good", VAL), ("bad_records", TRAIN), ("test_split", TEST)):
        assert detect_format(AOK / folder / name) == "aokvqa", (folder, name)
        head = (AOK / folder / name).read_bytes()[: registry.HEAD_BYTES]
        claims = {n: ld.detect(AOK / folder / name, head) for n, ld in registry.available().items() if ld.detect}
        assert claims["aokvqa"] == 2 and sorted(c for c in claims.values() if c) == [2]
    assert claims_on_other_fixtures("aokvqa", AOK) == []


def test_detection_leaves_llava_and_coco_lists(tmp_path):
    llava = tmp_path / "llava.json"
    llava.write_text(json.dumps([{"id": "1", "image": "a.jpg", "question_id": "x",
                                  "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]))
    assert detect_format(llava) == "llava"
    coco = tmp_path / "captions_val2017.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": []}))
    assert detect_format(coco) == "coco"


def test_layout_reads_the_file_as_an_aokvqa_source(tmp_path, load):
    root = tmp_path / "aokvqa_ds"
    (root / "images" / "val2017").mkdir(parents=True)
    shutil.copy(AOK / "good" / VAL, root / VAL)
    layout = read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == [VAL]
    assert list(layout.companions) == []
    assert load_dataset(layout, 2).height == load("good", VAL).height


@pytest.mark.parametrize("content, reason", [(b"", "malformed_file"), (b"[{", "malformed_file"),
                                             (b'{"data": []}', "unknown_format"), (b"[]", None)])
def test_unreadable_or_empty_file(tmp_path, content, reason):
    (tmp_path / VAL).write_bytes(content)
    rows = load_aokvqa(tmp_path / VAL, VAL).select("record_id", "reject_reason").rows()
    assert rows == ([(f"{VAL}#file", reason)] if reason else [])

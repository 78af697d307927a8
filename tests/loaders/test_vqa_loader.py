"""The vqav2 loader (VQA v2 / v1 / OK-VQA) on small files in the official on-disk format."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import dataset_version, load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, load_source, registry
from visit_assets.lib.metadata.loaders.vqa import image_key, load_vqa

DATA = Path(__file__).parent.parent / "data" / "loaders" / "vqav2"
Q = "v2_OpenEnded_mscoco_val2014_questions.json"
A = "v2_mscoco_val2014_annotations.json"


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str = Q) -> pl.DataFrame:
        return loaded(load_vqa, DATA / folder / name, f"{folder}/{name}", "vqav2")
    return run


def _doc(folder: str, name: str) -> dict:
    return json.loads((DATA / folder / name).read_text(encoding="utf-8"))


def _kinds(df: pl.DataFrame) -> dict[str, int]:
    return dict(df.group_by("kind").len().rows())


def _reasons(df: pl.DataFrame) -> dict[str, str | None]:
    return dict(df.select("record_id", "reject_reason").rows())


def test_good_split_gives_one_image_per_image_id_and_one_qa_per_question(load):
    df = load("good")
    questions = _doc("good", Q)["questions"]
    answers = {a["question_id"]: a["multiple_choice_answer"] for a in _doc("good", A)["annotations"]}
    image_ids = list(dict.fromkeys(q["image_id"] for q in questions))
    assert _kinds(df) == {"image": len(image_ids), "qa": len(questions)}
    assert df.height == len(questions) + len(image_ids)  # every question and image accounted for
    assert df["reject_reason"].null_count() == df.height
    images = df.filter(pl.col("kind") == "image")
    assert images["record_id"].to_list() == [f"good/{Q}#image/{i}" for i in image_ids]
    assert images["image_key"].to_list() == [f"COCO_val2014_{i:012d}.jpg" for i in image_ids]
    assert images["width"].null_count() == images.height  # VQA gives no image sizes
    qa = df.filter(pl.col("kind") == "qa")
    assert qa.select("record_id", "image_key", "text", "answer").rows() == [
        (f"good/{Q}#qa/{q['question_id']}", f"COCO_val2014_{q['image_id']:012d}.jpg", q["question"],
         answers[q["question_id"]]) for q in questions
    ]
    # the consensus answer, not the most frequent raw one ("table" x4 < "picnic table" x5 here anyway)
    assert qa.filter(pl.col("record_id").str.ends_with("/262148002"))["answer"].item() == "picnic table"


def test_detection_claims_both_files_and_beats_coco_on_the_annotations():
    for folder in ("good", "bad_records"):
        for name in (Q, A):
            assert detect_format(DATA / folder / name) == "vqav2"
    ann = DATA / "good" / A
    head = ann.read_bytes()[: registry.HEAD_BYTES]
    loaders = registry.available()
    assert loaders["coco"].detect(ann, head) == registry.STRUCTURE  # COCO's generic "annotations" claim ...
    assert loaders["vqav2"].detect(ann, head) == registry.SIGNATURE  # ... is outranked
    for p in (DATA / "okvqa").glob("*.json"):
        assert detect_format(p) == "vqav2"
    assert loaders["vqav2"].detect(DATA / "good" / "x.jsonl", head) == registry.NO


def test_unknown_and_ambiguous_files_are_reject_rows(tmp_path, monkeypatch):
    other = tmp_path / "other.json"
    other.write_text('{"questions": "not a list", "hello": 1}')
    row = load_source(other, "other.json").row(0, named=True)
    assert row["reject_reason"] == "unknown_format" and row["record_id"] == "other.json#file"

    q = tmp_path / Q
    shutil.copy(DATA / "good" / Q, q)
    loaders = dict(registry.available())
    vqa = loaders["vqav2"]
    loaders["vqa_clone"] = registry.Loader("vqa_clone", vqa.load, vqa.detect, vqa.companions)
    monkeypatch.setattr(registry, "available", lambda: loaders)
    row = load_source(q, Q).row(0, named=True)
    assert row["reject_reason"] == "ambiguous_format" and "vqa_clone" in row["reject_detail"]
    assert load_source(q, Q, "vqav2").height > 1  # naming the format settles it


def _dataset(tmp_path: Path, *folders_files: tuple[str, str]) -> Path:
    root = tmp_path / "vqa_ds"
    (root / "images").mkdir(parents=True)
    for folder, name in folders_files:
        shutil.copy(DATA / folder / name, root / name)
    return root


def test_layout_keeps_the_annotations_out_of_the_sources_as_a_companion(tmp_path, load):
    root = _dataset(tmp_path, ("good", Q), ("good", A))
    layout = read_layout(root)
    assert [(layout.source_name(p), f) for p, f in layout.sources] == [(Q, None)]
    assert [layout.source_name(p) for p in layout.companions] == [A]
    records = load_dataset(layout, n_shards=2)
    assert records.height == load("good").height  # the annotations are not loaded a second time

    before = dataset_version(layout)
    assert dataset_version(read_layout(root)) == before
    doc = json.loads((root / A).read_text())
    doc["annotations"][0]["multiple_choice_answer"] = "up"
    (root / A).write_text(json.dumps(doc))
    assert dataset_version(read_layout(root)) != before  # the companion is part of the version


def test_manifest_naming_the_questions_still_finds_the_companion(tmp_path):
    root = _dataset(tmp_path, ("good", Q), ("good", A))
    (root / "dataset.yaml").write_text(f"sources:\n  - path: {Q}\n    format: vqav2\n")
    layout = read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == [Q]
    assert [layout.source_name(p) for p in layout.companions] == [A]


def test_annotations_alone_are_one_missing_companion_row(tmp_path, load):
    df = load("annotations_only", A)
    assert df.select("record_id", "kind", "reject_reason").rows() == [
        (f"annotations_only/{A}#file", "invalid", "missing_companion")]
    root = _dataset(tmp_path, ("annotations_only", A))
    layout = read_layout(root)  # no questions file: the annotations are a source of their own ...
    assert [layout.source_name(p) for p, _ in layout.sources] == [A] and layout.companions == ()
    assert load_dataset(layout, 1)["reject_reason"].to_list() == ["missing_companion"]  # ... and say why


def test_missing_annotations_of_a_train_split_reject_every_question(load):
    df = load("missing_annotations", "v2_OpenEnded_mscoco_train2014_questions.json")
    qa, images = df.filter(pl.col("kind") == "qa"), df.filter(pl.col("kind") == "image")
    assert qa.height == 3 and set(qa["reject_reason"]) == {"missing_companion"}
    assert qa["reject_detail"][0].startswith("annotations file v2_mscoco_train2014_annotations.json not found")
    assert images["image_key"].to_list() == ["COCO_train2014_000000458752.jpg", "COCO_train2014_000000262146.jpg"]
    assert images["reject_reason"].null_count() == 2


def test_test_dev_questions_have_no_answers_and_use_test2015_images(load):
    df = load("test_dev", "v2_OpenEnded_mscoco_test-dev2015_questions.json")
    qa = df.filter(pl.col("kind") == "qa")
    assert qa.height == 3 and set(qa["reject_reason"]) == {"invalid_record"}
    assert set(qa["reject_detail"]) == {"no answers: the test-dev2015 split publishes questions only"}
    assert qa["answer"].null_count() == 3
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == [
        "COCO_test2015_000000262144.jpg", "COCO_test2015_000000262146.jpg"]


def test_bad_records_are_rejected_one_row_each(load):
    df = load("bad_records")
    questions = _doc("bad_records", Q)["questions"]
    annotations = _doc("bad_records", A)["annotations"]
    image_ids = {q["image_id"] for q in questions if isinstance(q, dict) and isinstance(q.get("image_id"), int)}
    assert _kinds(df) == {"image": len(image_ids), "qa": len(questions), "invalid": 4}
    s = f"bad_records/{Q}"
    reasons = _reasons(df)
    assert {k: v for k, v in reasons.items() if v} == {
        f"{s}#qa/@6": "invalid_record",  # question_id "524291000" is a string
        f"{s}#qa/524291001": "invalid_record",  # empty question
        f"{s}#qa/393225001@8": "duplicate_record_id",
        f"{s}#qa/393226000": "invalid_record",  # no annotation
        f"{s}#qa/393226001": "invalid_record",  # its annotation names another image
        f"{s}#qa/393226002": "invalid_record",  # no image_id
        f"{s}#qa/@12": "invalid_record",  # not an object
        f"{s}#annotation/999999000": "invalid_record",  # no such question
        f"{s}#annotation/393225002@8": "duplicate_record_id",
        f"{s}#annotation/@9": "invalid_record",  # question_id null
        f"{s}#annotation/@10": "invalid_record",  # not an object
    }
    detail = dict(df.select("record_id", "reject_detail").rows())
    assert detail[f"{s}#qa/@6"] == "question_id is a string, not an integer"
    assert "no annotation for question_id 393226000" in detail[f"{s}#qa/393226000"]
    assert "image_id 262148" in detail[f"{s}#qa/393226001"]
    assert "no question with question_id 999999000" in detail[f"{s}#annotation/999999000"]
    # every record of both files is a row: each question, each image, each annotation no question took
    joined = {q["question_id"] for q in questions if isinstance(q, dict)}
    orphans = [a for a in annotations if not isinstance(a, dict) or a.get("question_id") not in joined]
    assert df.height == len(questions) + len(image_ids) + len(orphans) + 1  # + the repeated annotation
    assert df.filter(pl.col("reject_reason").is_null(), pl.col("kind") == "qa").height == 6


def test_okvqa_uses_the_same_loader_and_the_most_common_answer(load):
    df = load("okvqa", "OpenEnded_mscoco_val2014_questions.json")
    qa = df.filter(pl.col("kind") == "qa")
    assert qa["reject_reason"].null_count() == 3
    assert qa["answer"].to_list() == ["race", "fern", "teddy bear"]  # fern / ivy tie 4-4: the first wins
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == [
        "COCO_val2014_000000297147.jpg", "COCO_val2014_000000040757.jpg"]


@pytest.mark.parametrize("content, reason", [(b"", "malformed_file"), (b'{"annotations": [', "malformed_file"),
                                             (b'[1, 2]', "unknown_format"), (b'{"\xff": 1}', "malformed_file")])
def test_unreadable_annotations_reject_each_question_with_the_file_reason(tmp_path, content, reason):
    shutil.copy(DATA / "good" / Q, tmp_path / Q)
    (tmp_path / A).write_bytes(content)
    qa = load_vqa(tmp_path / Q, Q).filter(pl.col("kind") == "qa")
    assert qa.height == 12 and set(qa["reject_reason"]) == {reason}
    assert qa["reject_detail"][0].startswith(f"annotations file {A}: ")


@pytest.mark.parametrize("content, reason", [(b"", "malformed_file"), (b'{"questions": [{"image_id": 1', "malformed_file"),
                                             (b'"text"', "unknown_format")])
def test_unreadable_questions_file_is_one_row(tmp_path, content, reason):
    (tmp_path / Q).write_bytes(content)
    df = load_vqa(tmp_path / Q, Q)
    assert df.select("record_id", "reject_reason").rows() == [(f"{Q}#file", reason)]


def test_image_keys():
    assert image_key("mscoco", "train2014", 9) == "COCO_train2014_000000000009.jpg"
    assert image_key("mscoco", "test-dev2015", 1) == "COCO_test2015_000000000001.jpg"
    assert image_key("abstract_v002", "val2015", 11779) == "abstract_v002_val2015_000000011779.png"
    assert image_key(None, None, 9) == "000000000009.jpg"  # nothing says the split: COCO 2017's name


def test_split_taken_from_the_file_name_when_the_fields_are_absent(tmp_path):
    doc = _doc("good", Q)
    del doc["data_subtype"], doc["data_type"]
    (tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json").write_text(json.dumps(doc))
    df = load_vqa(tmp_path / "v2_OpenEnded_mscoco_train2014_questions.json", "q.json")
    assert df["image_key"][0] == "COCO_train2014_000000262148.jpg"
    assert set(df.filter(pl.col("kind") == "qa")["reject_reason"]) == {"missing_companion"}


def test_a_split_name_that_is_not_a_plain_word_never_reaches_an_image_key(tmp_path):
    doc = _doc("good", Q)
    doc["data_subtype"] = "../../etc"
    (tmp_path / "questions.json").write_text(json.dumps(doc))
    keys = load_vqa(tmp_path / "questions.json", "q.json")["image_key"].drop_nulls()
    assert keys.len() > 0 and not keys.str.contains("/").any()
    assert keys[0] == "000000262148.jpg"  # no usable split: the 2017 name

"""The text-rich VQA loaders (stvqa, ocrvqa, docvqa, infographicvqa, chartqa, scienceqa) on small files
in each release's layout: images, QA rows, every input record a row, bad input as reject rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.records import REJECT_REASONS, SOURCE_RECORD_SCHEMA

DATA = Path(__file__).parent.parent / "data" / "loaders"
REPO = Path(__file__).parents[2]


def load(fmt: str, rel: str) -> pl.DataFrame:
    """Load DATA/<folder>/<rel> (folder: the format, infographicvqa's own) and check the invariants."""
    df = registry.get(fmt).load(DATA / fmt / rel, rel)
    assert df.schema == pl.Schema(SOURCE_RECORD_SCHEMA)
    assert df["record_id"].n_unique() == df.height
    assert set(df["source_format"]) == {fmt}
    assert set(df["reject_reason"].drop_nulls()) <= set(REJECT_REASONS)
    assert df.filter(pl.col("reject_reason").is_not_null())["reject_detail"].null_count() == 0
    assert df.filter(pl.col("kind") == "qa", pl.col("reject_reason").is_null())["answer"].null_count() == 0
    return df


def rejects(df: pl.DataFrame) -> dict[str, str]:
    return {rid: reason for rid, reason in df.select("record_id", "reject_reason").rows() if reason}


def all_fixture_files() -> list[Path]:
    """Every metadata-like file of the test fixtures and of the packaged samples."""
    files = [p for p in DATA.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".tsv", ".parquet")]
    files += [p for p in (REPO / "visit_assets" / "data").glob("sample*/**/*") if p.is_file()]
    return sorted(files)

MINE = ("stvqa", "ocrvqa", "docvqa", "infographicvqa", "chartqa", "scienceqa")


def _kinds(df: pl.DataFrame) -> dict[str, int]:
    return dict(df.group_by("kind").len().rows())


# ------------------------------------------------------------------------------------------------ ST-VQA


def test_stvqa_good_task_file():
    df = load("stvqa", "good/train_task_3.json")
    data = json.loads((DATA / "stvqa/good/train_task_3.json").read_text())["data"]
    paths = list(dict.fromkeys(e["file_path"] for e in data))
    assert _kinds(df) == {"image": len(paths), "qa": len(data)}
    assert df["reject_reason"].null_count() == df.height
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == paths
    qa = df.filter(pl.col("kind") == "qa")
    assert qa["record_id"].to_list() == [f"good/train_task_3.json#qa/{e['question_id']}" for e in data]
    assert qa["answer"].to_list() == ["city express", "42", "coke", "stop"]  # the most common answer


def test_stvqa_test_split_and_bad_records():
    test = load("stvqa", "test_split/test_task_3.json")
    assert set(test.filter(pl.col("kind") == "qa")["reject_detail"]) == {
        "no answers: the test split publishes questions only"}
    df = load("stvqa", "bad_records/train_task_1.json")
    s = "bad_records/train_task_1.json"
    assert rejects(df) == {
        f"{s}#qa/@1": "invalid_record",  # 7, not an object
        f"{s}#qa/@2": "invalid_record",  # question_id "2" is a string
        f"{s}#qa/3": "unsafe_path",  # ../../etc/passwd
        f"{s}#qa/4": "invalid_record",  # no file_path
        f"{s}#qa/5": "invalid_record",  # blank question
        f"{s}#qa/1@6": "duplicate_record_id",
        f"{s}#qa/6": "invalid_record",  # only empty answers
        f"{s}#qa/@8": "invalid_record",  # question_id true
    }
    entries = json.loads((DATA / "stvqa/bad_records/train_task_1.json").read_text())["data"]
    assert _kinds(df) == {"qa": len(entries), "image": 3}


# ------------------------------------------------------------------------------------------------ OCR-VQA


def test_ocrvqa_good_pairs_questions_with_answers_by_position():
    df = load("ocrvqa", "good/dataset.json")
    data = json.loads((DATA / "ocrvqa/good/dataset.json").read_text())
    assert _kinds(df) == {"image": len(data), "qa": sum(len(e["questions"]) for e in data.values())}
    assert df["reject_reason"].null_count() == df.height
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == ["0486275477.jpg", "B00EXAMPLE.png"]
    qa = df.filter(pl.col("kind") == "qa")
    first = data["0486275477"]
    assert qa.head(5).select("record_id", "text", "answer").rows() == [
        (f"good/dataset.json#qa/0486275477/{n}", q, a)
        for n, (q, a) in enumerate(zip(first["questions"], first["answers"], strict=True))]


def test_ocrvqa_bad_records():
    df = load("ocrvqa", "bad_records/dataset.json")
    s = "bad_records/dataset.json"
    assert rejects(df) == {
        f"{s}#qa/1111111111/2": "invalid_record",  # empty question
        f"{s}#qa/2222222222": "invalid_record",  # entry is a string
        f"{s}#qa/@2": "invalid_record",  # image id with a space
        f"{s}#qa/3333333333/0": "invalid_record",  # imageURL without a file suffix
        f"{s}#qa/4444444444/1": "invalid_record",  # question without an answer
        f"{s}#qa/5555555555/1": "invalid_record",  # answer without a question
        f"{s}#qa/6666666666": "invalid_record",  # no questions at all
    }
    rows = {r["record_id"]: r for r in df.iter_rows(named=True)}
    assert rows[f"{s}#qa/1111111111/1"]["answer"] == "2017"  # a number answer, as text
    assert _kinds(df) == {"image": 4, "qa": 3 + 1 + 1 + 1 + 2 + 2 + 1}


# ------------------------------------------------------------------------------------------------ DocVQA / InfographicVQA


def test_docvqa_good_and_test_split():
    df = load("docvqa", "good/val_v1.0_withQT.json")
    assert _kinds(df) == {"image": 2, "qa": 3}
    assert df["reject_reason"].null_count() == df.height
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == [
        "val/documents/pybv0228_81.png", "val/documents/mxcj0037_1.png"]
    assert df.filter(pl.col("kind") == "qa")["answer"].to_list() == ["1/8/93", "1:1", "MEMORANDUM"]
    test = load("docvqa", "test_split/test_v1.0.json")
    assert test.filter(pl.col("kind") == "image")["image_key"].to_list() == ["test/documents/ffbf0023_4.png"]
    assert rejects(test) == {"test_split/test_v1.0.json#qa/57344": "invalid_record"}


def test_docvqa_bad_records():
    df = load("docvqa", "bad_records/train_v1.0_withQT.json")
    s = "bad_records/train_v1.0_withQT.json"
    assert rejects(df) == {
        f"{s}#qa/@1": "invalid_record",  # questionId "2" is a string
        f"{s}#qa/3": "unsafe_path",  # absolute image path
        f"{s}#qa/4": "invalid_record",  # empty question
        f"{s}#qa/1@4": "duplicate_record_id",
        f"{s}#qa/5": "invalid_record",  # no answers
        f"{s}#qa/@6": "invalid_record",  # a string entry
        f"{s}#qa/6": "invalid_record",  # no image
    }
    assert _kinds(df) == {"image": 2, "qa": 8}


def test_infographicvqa_good_and_bad_records():
    df = load("infographicvqa", "good/infographicsVQA_val_v1.0_withQT.json")
    assert _kinds(df) == {"image": 2, "qa": 3}
    assert df["reject_reason"].null_count() == df.height
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == ["37313.jpeg", "20471.jpeg"]
    bad = load("infographicvqa", "bad_records/infographicsVQA_train_v1.0.json")
    s = "bad_records/infographicsVQA_train_v1.0.json"
    assert rejects(bad) == {f"{s}#qa/2": "unsafe_path", f"{s}#qa/@2": "invalid_record",
                            f"{s}#qa/3": "invalid_record", f"{s}#qa/1@4": "duplicate_record_id"}
    assert _kinds(bad) == {"image": 2, "qa": 5}


# ------------------------------------------------------------------------------------------------ ChartQA


def test_chartqa_human_and_augmented_files():
    human = load("chartqa", "good/val/val_human.json")
    assert _kinds(human) == {"image": 2, "qa": 3}
    assert human["reject_reason"].null_count() == human.height
    assert human.filter(pl.col("kind") == "image")["image_key"].to_list() == [
        "val/png/two_col_100.png", "val/png/multi_col_2041.png"]
    qa = human.filter(pl.col("kind") == "qa")
    assert qa.select("record_id", "answer").rows() == [
        ("good/val/val_human.json#qa/0", "2019"), ("good/val/val_human.json#qa/1", "3.4"),
        ("good/val/val_human.json#qa/2", "Yes")]
    aug = load("chartqa", "good/val/val_augmented.json")
    assert _kinds(aug) == {"image": 1, "qa": 2}


def test_chartqa_bad_records():
    df = load("chartqa", "bad_records/train/train_augmented.json")
    s = "bad_records/train/train_augmented.json"
    assert rejects(df) == {f"{s}#qa/1": "unsafe_path", f"{s}#qa/2": "invalid_record", f"{s}#qa/3": "invalid_record",
                           f"{s}#qa/4": "invalid_record", f"{s}#qa/5": "invalid_record", f"{s}#qa/6": "invalid_record"}
    assert df.filter(pl.col("record_id") == f"{s}#qa/0")["answer"].to_list() == ["12"]  # a number label
    assert _kinds(df) == {"image": 1, "qa": 7}


# ------------------------------------------------------------------------------------------------ ScienceQA


def test_scienceqa_multiple_choice_with_hint_as_context():
    df = load("scienceqa", "good/problems.json")
    assert _kinds(df) == {"image": 3, "qa": 4, "caption": 6}  # a lecture and a solution per kept problem
    assert df.filter(pl.col("kind") == "image")["image_key"].to_list() == [
        "train/1/image.png", "val/3/image.png", "test/4/image.png"]
    teaching = df.filter(pl.col("record_id").str.starts_with("good/problems.json#caption/1/"))
    assert teaching["text"].to_list() == ["Background: Lecture text.", "Solution: Solution text."]
    assert set(teaching["image_key"]) == {"train/1/image.png"}
    rows = {r["record_id"]: r for r in df.iter_rows(named=True)}
    first = rows["good/problems.json#qa/1"]
    assert (first["text"], first["answer"]) == (
        "Which of these states is farthest north? Options: West Virginia, Louisiana, Arizona, Oklahoma.", "West Virginia")
    third = rows["good/problems.json#qa/3"]
    assert third["text"] == ("Context: People can use the engineering-design process to test plants. Identify the "
                             "question that the experiment can best answer. Options: Do plants grow taller in sun?, "
                             "Do plants need water?.")
    assert third["answer"] == "Do plants need water?"
    text_only = rows["good/problems.json#qa/2"]
    assert (text_only["reject_reason"], text_only["reject_detail"]) == ("invalid_record", "text-only problem: no image")


def test_scienceqa_bad_records():
    df = load("scienceqa", "bad_records/problems.json")
    s = "bad_records/problems.json"
    assert rejects(df) == {
        f"{s}#qa/11": "invalid_record",  # answer index out of range
        f"{s}#qa/12": "invalid_record",  # an empty choice
        f"{s}#qa/13": "invalid_record",  # entry is a string
        f"{s}#qa/@4": "invalid_record",  # pid with a space
        f"{s}#qa/15": "unsafe_path",  # image leaves the folder
        f"{s}#qa/16": "invalid_record",  # empty question
        f"{s}#qa/17": "invalid_record",  # split not a word
        f"{s}#qa/18": "invalid_record",  # answer true
    }
    assert _kinds(df)["qa"] == len(json.loads((DATA / "scienceqa/bad_records/problems.json").read_text()))


def test_scienceqa_pid_splits_is_a_companion(tmp_path):
    root = tmp_path / "scienceqa_ds"
    (root / "images").mkdir(parents=True)
    for name in ("problems.json", "pid_splits.json"):
        shutil.copy(DATA / "scienceqa/good" / name, root / name)
    layout = read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == ["problems.json"]
    assert load_dataset(layout, 2).height == load("scienceqa", "good/problems.json").height


# ------------------------------------------------------------------------------------------------ all six


FIXTURES = {
    "stvqa": ["good/train_task_3.json", "test_split/test_task_3.json", "bad_records/train_task_1.json"],
    "ocrvqa": ["good/dataset.json", "bad_records/dataset.json"],
    "docvqa": ["good/val_v1.0_withQT.json", "test_split/test_v1.0.json", "bad_records/train_v1.0_withQT.json"],
    "infographicvqa": ["good/infographicsVQA_val_v1.0_withQT.json", "bad_records/infographicsVQA_train_v1.0.json"],
    "chartqa": ["good/val/val_human.json", "good/val/val_augmented.json", "bad_records/train/train_augmented.json"],
    "scienceqa": ["good/problems.json", "bad_records/problems.json"],
}


def test_every_fixture_is_listed():
    for fmt in MINE:
        found = sorted(p.relative_to(DATA / fmt).as_posix() for p in (DATA / fmt).rglob("*.json"))
        assert found == sorted(FIXTURES[fmt] + (["good/pid_splits.json"] if fmt == "scienceqa" else [])), fmt


@pytest.mark.parametrize("fmt", MINE)
def test_detection_claims_its_own_fixtures_alone(fmt):
    for rel in FIXTURES[fmt]:
        path = DATA / fmt / rel
        head = path.read_bytes()[: registry.HEAD_BYTES]
        claims = {n: ld.detect(path, head) for n, ld in registry.available().items() if ld.detect}
        assert {n: c for n, c in claims.items() if c} == {fmt: 2}, (rel, claims)
        assert detect_format(path) == fmt


@pytest.mark.parametrize("fmt", MINE)
def test_detection_takes_no_other_file(fmt):
    loader = registry.get(fmt)
    for p in all_fixture_files():
        if DATA / fmt not in p.parents:
            assert loader.detect(p, p.read_bytes()[: registry.HEAD_BYTES]) == 0, p
    # pid_splits.json is read with problems.json only
    assert detect_format(DATA / "scienceqa/good/pid_splits.json") is None


@pytest.mark.parametrize("fmt", MINE)
@pytest.mark.parametrize("content, reason", [(b"", "malformed_file"), (b"{[", "malformed_file"),
                                             (b'"text"', "unknown_format")])
def test_unreadable_file_is_one_reject_row(tmp_path, fmt, content, reason):
    path = tmp_path / FIXTURES[fmt][0].split("/")[-1]
    path.write_bytes(content)
    rows = registry.get(fmt).load(path, path.name).select("record_id", "reject_reason").rows()
    assert rows == [(f"{path.name}#file", reason)]


@pytest.mark.parametrize("fmt, content", [("stvqa", b'{"data": []}'), ("docvqa", b'{"data": []}'),
                                          ("infographicvqa", b'{"data": []}'), ("chartqa", b"[]"),
                                          ("ocrvqa", b"{}"), ("scienceqa", b"{}")])
def test_empty_file_gives_no_rows(tmp_path, fmt, content):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    assert registry.get(fmt).load(path, "x.json").height == 0


@pytest.mark.parametrize("fmt, content", [("stvqa", b'{"questions": []}'), ("docvqa", b'[{"questionId": 1}]'),
                                          ("chartqa", b'{"data": []}')])
def test_wrong_structure_is_unknown_format(tmp_path, fmt, content):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    assert registry.get(fmt).load(path, "x.json")["reject_reason"].to_list() == ["unknown_format"]

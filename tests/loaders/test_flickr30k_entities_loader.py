"""The flickr30k_entities loader on small files in the release layout (Sentences/<id>.txt + Annotations/<id>.xml)."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import dataset_version, load_dataset, read_layout
from visit_assets.lib.metadata.loaders.flickr30k_entities import load_flickr30k_entities, parse_line

DATA = Path(__file__).parent.parent / "data" / "loaders" / "flickr30k_entities"
GOOD, BAD = "Sentences/1000000001.txt", "Sentences/2000000002.txt"


@pytest.fixture
def load(loaded):
    """load(folder, name): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str) -> pl.DataFrame:
        return loaded(load_flickr30k_entities, DATA / folder / name, f"{folder}/{name}", "flickr30k_entities")
    return run


def test_parse_line_keeps_the_words_and_the_chains():
    assert parse_line("[/EN#10/people A woman] walks [/EN#12/animals/other two  dogs] .") == (
        "A woman walks two dogs .", [("10", "A woman"), ("12", "two dogs")])
    assert parse_line("[/EN#10/people A woman walks") is None
    assert parse_line("plain words only") == ("plain words only", [])


def test_captions_and_one_box_per_object_and_distinct_phrase(load):
    df = load("good", GOOD)
    s = f"good/{GOOD}"
    lines = (DATA / "good" / GOOD).read_text().splitlines()
    assert df["reject_reason"].null_count() == df.height
    image = df.filter(pl.col("kind") == "image").row(0, named=True)
    assert (image["record_id"], image["image_key"], image["width"], image["height"]) == (
        f"{s}#image/1000000001", "flickr30k-images/1000000001.jpg", 500, 333)
    caps = df.filter(pl.col("kind") == "caption")
    assert caps["record_id"].to_list() == [f"{s}#caption/{n}" for n in range(len(lines))]
    assert caps["text"][0] == "A woman in a red coat walks two dogs along the beach ."
    boxes = df.filter(pl.col("kind") == "box")
    labels = {}
    for rid, label in boxes.select("record_id", "label").rows():
        labels.setdefault(rid.rsplit("/", 1)[0], []).append(label)
    assert labels == {f"{s}#box/0": ["a woman", "a lady", "someone", "a person"],
                      f"{s}#box/1": ["a red coat", "red"],
                      f"{s}#box/2": ["two dogs", "her dogs", "dogs", "two pets"],
                      f"{s}#box/3": ["two dogs", "her dogs", "dogs", "two pets"]}  # both boxes of chain 12
    first = boxes.row(0, named=True)
    assert (first["bbox_x"], first["bbox_y"], first["bbox_w"], first["bbox_h"], first["bbox_norm"]) == (
        119.0, 39.0, 140.0, 280.0, False)
    # the scene object (chains 13, 14) has no box and gives no row
    assert df.height == 1 + len(lines) + sum(map(len, labels.values()))


def test_bad_records_are_rejected_one_row_each(load):
    df = load("bad_records", BAD)
    s = f"bad_records/{BAD}"
    assert {k: v for k, v in df.select("record_id", "reject_reason").rows() if v} == {
        f"{s}#caption/1": "invalid_record",  # an unclosed phrase
        f"{s}#box/0/1": "text_too_long",  # a 19-word phrase
        f"{s}#box/1": "invalid_record",  # xmax "abc"
        f"{s}#box/2/0": "box_out_of_bounds",  # xmin == xmax
        f"{s}#box/3": "invalid_record",  # chain 23: no phrase names it
    }
    assert df.filter(pl.col("kind") == "caption").height == 4  # the blank line is no record
    rows = {r["record_id"]: r for r in df.iter_rows(named=True)}
    assert rows[f"{s}#caption/3"]["text"] == "A sign by the bike ."  # n counts non-empty lines only
    assert rows[f"{s}#caption/2"]["reject_reason"] is None  # a long phrase is a fine caption, not a label


def test_absent_or_unreadable_annotations(tmp_path, load):
    df = load("no_annotations", "Sentences/3000000003.txt")
    assert df.filter(pl.col("reject_reason").is_not_null()).select("record_id", "reject_reason").rows() == [
        ("no_annotations/Sentences/3000000003.txt#box/file", "missing_companion")]
    for content in (b"<annotation><size>", b'<!DOCTYPE a [<!ENTITY x "y">]><annotation/>'):
        shutil.copytree(DATA / "good", tmp_path / "r", dirs_exist_ok=True)
        (tmp_path / "r" / "Annotations" / "1000000001.xml").write_bytes(content)
        bad = load_flickr30k_entities(tmp_path / "r" / GOOD, GOOD)
        assert bad.filter(pl.col("reject_reason").is_not_null()).select("record_id", "reject_reason").rows() == [
            (f"{GOOD}#box/file", "malformed_file")]
        assert set(bad["kind"]) == {"image", "caption", "invalid"}


@pytest.mark.parametrize("content", [b"", b"\n \n", b"\xff\xfe[/EN#1/people a]\n"])
def test_unreadable_sentences_file_is_one_row(tmp_path, content):
    (tmp_path / "Sentences").mkdir()
    (tmp_path / "Sentences" / "5.txt").write_bytes(content)
    rows = load_flickr30k_entities(tmp_path / "Sentences" / "5.txt", "5.txt").select("record_id", "reject_reason").rows()
    assert rows == [("5.txt#file", "malformed_file")]


def test_detection_claims_sentences_files_only(detection_claims, claims_on_other_fixtures):
    for folder, name in (("good", GOOD), ("bad_records", BAD), ("no_annotations", "Sentences/3000000003.txt")):
        claims = detection_claims(DATA / folder / name)
        assert claims["flickr30k_entities"] == 2 and sorted(claims.values())[-2] == 0
    assert claims_on_other_fixtures("flickr30k_entities", DATA) == []


def test_layout_takes_sentences_files_with_their_annotations_and_no_other_text_file(tmp_path, load):
    root = tmp_path / "flickr_ds"
    shutil.copytree(DATA / "good", root)
    (root / "images").mkdir()
    (root / "notes.txt").write_text("[/EN#1/people not a source] .")
    layout = read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == [GOOD]
    assert [layout.source_name(p) for p in layout.companions] == ["Annotations/1000000001.xml"]
    assert load_dataset(layout, 2).height == load("good", GOOD).height
    before = dataset_version(layout)
    (root / "Annotations" / "1000000001.xml").write_text("<annotation/>")
    assert dataset_version(read_layout(root)) != before

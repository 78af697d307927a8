"""The refcoco loader on small files in the release layout (refs(<split_by>).p / .json + instances.json)."""

from __future__ import annotations

import collections
import json
import pickle
import shutil
from pathlib import Path

import polars as pl
import pytest

from visit_assets.lib.metadata.dataset import dataset_version, load_dataset, read_layout
from visit_assets.lib.metadata.loaders import detect_format
from visit_assets.lib.metadata.loaders.refcoco import load_refcoco

DATA = Path(__file__).parent.parent / "data" / "loaders" / "refcoco"
UNC, UMD = "refs(unc).p", "refs(umd).json"


@pytest.fixture
def load(loaded):
    """load(folder, name): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str) -> pl.DataFrame:
        return loaded(load_refcoco, DATA / folder / name, f"{folder}/{name}", "refcoco")
    return run


def _refs(folder: str, name: str) -> list:
    path = DATA / folder / name
    return pickle.loads(path.read_bytes()) if path.suffix == ".p" else json.loads(path.read_text())


def test_pickled_refs_give_images_and_one_labelled_box_per_expression(load):
    df = load("good/refcoco", UNC)
    refs = _refs("good/refcoco", UNC)
    instances = json.loads((DATA / "good/refcoco/instances.json").read_text())
    image_ids = list(dict.fromkeys(r["image_id"] for r in refs))
    sentences = [(r, s) for r in refs for s in r["sentences"]]
    assert dict(df.group_by("kind").len().rows()) == {"image": len(image_ids), "box": len(sentences)}
    assert df["reject_reason"].null_count() == df.height
    images = df.filter(pl.col("kind") == "image")
    sizes = {i["id"]: (i["width"], i["height"]) for i in instances["images"]}
    assert images.select("record_id", "image_key", "width", "height").rows() == [
        (f"good/refcoco/{UNC}#image/{i}", f"COCO_train2014_{i:012d}.jpg", *sizes[i]) for i in image_ids]
    boxes = df.filter(pl.col("kind") == "box")
    bbox = {a["id"]: a["bbox"] for a in instances["annotations"]}
    assert boxes["record_id"].to_list() == [f"good/refcoco/{UNC}#box/{s['sent_id']}" for _, s in sentences]
    assert boxes.select("bbox_x", "bbox_y", "bbox_w", "bbox_h").rows() == [tuple(bbox[r["ann_id"]]) for r, _ in sentences]
    assert set(boxes["bbox_norm"]) == {False}
    assert boxes["label"].to_list() == ["woman in front", "lady smiling", "woman", "man on the right", "tv guy right",
                                        "dog lying down left", "brown dog"]


def test_json_refs_read_the_same_and_long_expressions_are_not_labels(load):
    df = load("good/refcocog", UMD)
    rows = {r["record_id"]: r for r in df.iter_rows(named=True)}
    assert rows[f"good/refcocog/{UMD}#box/20"]["label"] == "a brown dog lying on the grass"
    assert rows[f"good/refcocog/{UMD}#box/20"]["reject_reason"] is None
    assert rows[f"good/refcocog/{UMD}#box/21"]["reject_reason"] == "text_too_long"
    assert df.filter(pl.col("kind") == "image").height == 2


def test_bad_records_are_rejected_one_row_each(load):
    df = load("bad_records/refcoco+", UNC)
    s = f"bad_records/refcoco+/{UNC}"
    assert {k: v for k, v in df.select("record_id", "reject_reason").rows() if v} == {
        f"{s}#box/0@0.1": "duplicate_record_id",  # sent_id 0 twice in one ref
        f"{s}#box/1": "invalid_record",  # blank expression
        f"{s}#box/2": "text_too_long",  # 13 words
        f"{s}#ref/@1": "invalid_record",  # a string, not a ref
        f"{s}#box/3": "invalid_record",  # no ann_id
        f"{s}#box/4": "duplicate_record_id",  # ref_id 0 again
        f"{s}#box/5": "unknown_image_id",  # image 123 not in instances.json
        f"{s}#box/6": "invalid_record",  # ann 424242 not in instances.json
        f"{s}#box/7": "invalid_record",  # the annotation is of another image
        f"{s}#box/8": "box_out_of_bounds",  # zero width
        f"{s}#box/9": "invalid_record",  # bbox with a string
        f"{s}#ref/9": "invalid_record",  # no sentences
        f"{s}#box/@10.0": "invalid_record",  # a sentence that is a number
    }
    rows = {r["record_id"]: r for r in df.iter_rows(named=True)}
    assert rows[f"{s}#box/11"]["label"] == "raw only Dog"  # no "sent": the raw expression
    assert rows[f"{s}#box/@10.2"]["reject_reason"] is None  # no sent_id: a positional id
    refs = _refs("bad_records/refcoco+", UNC)
    n_sentences = sum(len(r["sentences"]) for r in refs if isinstance(r, dict) and r.get("sentences"))
    no_sentences = sum(1 for r in refs if not isinstance(r, dict) or not r.get("sentences"))
    assert df.height == n_sentences + no_sentences + 2  # + the two images of instances.json the refs name


def test_missing_or_unreadable_instances_reject_every_expression(tmp_path):
    shutil.copy(DATA / "good/refcoco" / UNC, tmp_path / UNC)
    df = load_refcoco(tmp_path / UNC, UNC)
    assert set(df["kind"]) == {"box"} and set(df["reject_reason"]) == {"missing_companion"}
    (tmp_path / "instances.json").write_text('{"images": [')
    df = load_refcoco(tmp_path / UNC, UNC)
    assert set(df["reject_reason"]) == {"malformed_file"} and df.height == 7


def test_a_pickle_naming_any_class_or_function_is_refused(tmp_path):
    calls = []

    class Boom:
        def __reduce__(self):
            return (calls.append, ("ran",))

    for i, payload in enumerate([[Boom()], [collections.OrderedDict(ref_id=1)], b"\x80\x02]q\x00(K\x01"]):
        path = tmp_path / f"refs(x{i}).p"
        path.write_bytes(payload if isinstance(payload, bytes) else pickle.dumps(payload, protocol=2))
        rows = load_refcoco(path, path.name).select("record_id", "reject_reason").rows()
        assert rows == [(f"{path.name}#file", "malformed_file")], payload
    assert calls == []


@pytest.mark.parametrize("name, content, reason", [
    (UNC, b"", "malformed_file"), (UMD, b"[{", "malformed_file"), (UMD, b'{"refs": []}', "unknown_format"),
    (UNC, pickle.dumps({"refs": []}, protocol=2), "unknown_format"), (UMD, b"[]", None)])
def test_unreadable_or_empty_refs_file(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    rows = load_refcoco(tmp_path / name, name).select("record_id", "reject_reason").rows()
    assert rows == ([(f"{name}#file", reason)] if reason else [])


def test_detection_claims_refs_files_and_leaves_instances_to_coco(detection_claims, claims_on_other_fixtures):
    for folder, name in (("good/refcoco", UNC), ("good/refcocog", UMD), ("bad_records/refcoco+", UNC)):
        claims = detection_claims(DATA / folder / name)
        assert claims["refcoco"] == 2 and sorted(claims.values())[-2] < 2, (folder, name)
        assert detect_format(DATA / folder / "instances.json") == "coco"
    assert claims_on_other_fixtures("refcoco", DATA) == []


def test_layout_keeps_instances_as_a_companion_and_versions_it(tmp_path, load):
    root = tmp_path / "refcoco_ds"
    shutil.copytree(DATA / "good" / "refcoco", root / "refcoco")
    (root / "images").mkdir()
    (root / "refcoco" / "model.p").write_bytes(pickle.dumps([1, 2], protocol=2))  # a stray pickle: no source
    layout = read_layout(root)
    assert [layout.source_name(p) for p, _ in layout.sources] == [f"refcoco/{UNC}"]
    assert [layout.source_name(p) for p in layout.companions] == ["refcoco/instances.json"]
    assert load_dataset(layout, 2).height == load("good/refcoco", UNC).height
    before = dataset_version(layout)
    (root / "refcoco" / "instances.json").write_text("{}")
    assert dataset_version(read_layout(root)) != before

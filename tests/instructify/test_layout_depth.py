"""Depth bands in the layout: thresholds, the record format -> grouping -> facts path, bad depths,
and the text of boxes without depth left exactly as it was."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from visit_assets.lib.ids import content_hash
from visit_assets.lib.instructify.facts import depth_band, facts_for, layout_description
from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.grouping import group_records
from visit_assets.lib.metadata.loaders.records_format import load_records


def box(label, x1, y1, x2, y2, **extra):
    return {"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2, **extra}


def test_band_thresholds_are_thirds():
    assert [depth_band(d) for d in (0, 0.33, 1 / 3, 0.5, 0.66, 2 / 3, 1)] == [
        "foreground", "foreground", "middle ground", "middle ground", "middle ground", "background", "background"]
    assert [depth_band(d) for d in (None, -0.01, 1.01, math.nan)] == [None] * 4


# Text written by the layout before depth existed: boxes without depth must read exactly so (fact ids).
NO_DEPTH = [box("person", .1, .1, .6, .95), box("patch", .2, .3, .3, .4), box("cup", .7, .6, .8, .75)] + [
    box("coin", .05 + i * .1, .02, .1 + i * .1, .07) for i in range(9)]
NO_DEPTH_TEXT = """\
Objects: many coins, 1 cup, 1 patch, 1 person.
Layout (centre and size as fractions of the image width and height, rounded to 0.05):
- person: large, centre; centre (0.35, 0.50), size 0.50 x 0.85
  - patch (inside or on person): small, left; centre (0.25, 0.35), size 0.10 x 0.10
- many coins: in the top area; region centre (0.50, 0.05), size 0.85 x 0.05
- cup: small, bottom right; centre (0.75, 0.70), size 0.10 x 0.15"""


def test_layout_without_depth_is_unchanged():
    assert layout_description(NO_DEPTH) == NO_DEPTH_TEXT
    # a null depth (what every loader but the record format writes) and a bad one read the same
    assert layout_description([{**b, "depth": None} for b in NO_DEPTH]) == NO_DEPTH_TEXT
    for bad in ("near", True, -0.5, 2, math.nan):  # the loader rejects these; the layout never shows them
        assert layout_description([{**b, "depth": bad} for b in NO_DEPTH]) == NO_DEPTH_TEXT


def test_layout_names_bands_and_group_bands_only_when_members_agree():
    boxes = [box("person", .1, .1, .6, .95, depth=0.1), box("patch", .2, .3, .3, .4, depth=0.12),
             box("cup", .7, .6, .8, .75, depth=0.5)]
    coins = [box("coin", .05 + i * .1, .02, .1 + i * .1, .07, depth=0.8 + i * 0.01) for i in range(9)]
    text = layout_description(boxes + coins)
    assert "- person: large, centre, in the foreground; centre (0.35, 0.50)" in text
    assert "  - patch (inside or on person): small, left, in the foreground; centre" in text
    assert "- cup: small, bottom right, in the middle ground; centre" in text
    assert "- many coins: in the top area, in the background; region centre" in text
    split = [{**c, "depth": 0.2} if i == 0 else c for i, c in enumerate(coins)]  # one coin in front
    assert "- many coins: in the top area; region centre" in layout_description(boxes + split)
    partial = [{**c, "depth": None} if i == 0 else c for i, c in enumerate(coins)]  # one coin unknown
    assert "- many coins: in the top area; region centre" in layout_description(boxes + partial)


def test_merged_duplicate_keeps_a_depth_whatever_the_order():
    plain, deep = box("star", .4, .4, .5, .5), box("star", .401, .4, .5, .5, depth=0.9)
    for boxes in ([plain, deep], [deep, plain]):
        assert layout_description(boxes).splitlines()[2] == (
            "- star: small, centre, in the background; centre (0.45, 0.45), size 0.10 x 0.10")


def test_record_format_depth_reaches_the_facts(tmp_path):
    street = {"id": "s", "image": "street.jpg", "width": 640, "height": 480, "boxes": [
        {"label": "car", "bbox": [0.05, 0.5, 0.4, 0.3], "normalized": True, "depth": 0.1},
        {"label": "tree", "bbox": [320, 24, 96, 240], "depth": 1},  # pixels, normalised at grouping
        {"label": "dog", "bbox": [0.6, 0.7, 0.1, 0.1], "normalized": True}]}
    (tmp_path / "depth.jsonl").write_text(json.dumps(street) + "\n")
    records = load_dataset(read_layout(tmp_path), n_shards=1)
    assert records.filter(kind="box")["bbox_depth"].to_list() == [0.1, 1.0, None]
    grouped, rejects = group_records(records, None)
    assert rejects.is_empty()
    rec = grouped.row(0, named=True)
    assert [b["depth"] for b in rec["boxes"]] == [0.1, 1.0, None]
    objects = [f.text for f in facts_for(rec) if f.kind == "object"]
    assert objects[0] == "Objects: 1 car, 1 dog, 1 tree."
    assert "car: medium, left, in the foreground; centre (0.25, 0.65), size 0.40 x 0.30" in objects
    assert "tree: medium, top, in the background; centre (0.55, 0.30), size 0.15 x 0.50" in objects
    assert "dog: small, bottom; centre (0.65, 0.75), size 0.10 x 0.10" in objects  # no depth: no band


@pytest.mark.parametrize("bad", ["near", True, -0.1, 1.5, "NaN", [0.2]])
def test_bad_depth_rejects_the_box_with_its_value(tmp_path, bad):
    line = {"id": "s", "image": "street.jpg", "boxes": [
        {"label": "car", "bbox": [0, 0, 0.5, 0.5], "normalized": True, "depth": bad},
        {"label": "bus", "bbox": [0, 0, 0.5, 0.5], "normalized": True, "depth": 0.5}]}
    path = tmp_path / "depth.jsonl"
    # NaN is not JSON, but Python's json (and so this loader) reads the bare token
    path.write_text(json.dumps(line).replace('"NaN"', "NaN"))
    frame = load_records(path, "depth.jsonl")
    car, bus = frame.filter(kind="box").iter_rows(named=True)
    assert car["reject_reason"] == "invalid_record" and car["bbox_depth"] is None
    assert car["reject_detail"].startswith("boxes[0].depth must be a number in [0, 1]")
    assert bus["reject_reason"] is None and bus["bbox_depth"] == 0.5


def test_depth_in_parquet_records(tmp_path):
    path = tmp_path / "depth.parquet"
    pl.DataFrame([{"image": "a.jpg", "boxes": [{"label": "car", "bbox": [0.0, 0.0, 0.5, 0.5], "normalized": True,
                                                 "depth": 0.25},
                                                {"label": "cat", "bbox": [0.5, 0.5, 0.2, 0.2], "normalized": True,
                                                 "depth": float("nan")},
                                                {"label": "cup", "bbox": [0.1, 0.1, 0.1, 0.1], "normalized": True,
                                                 "depth": None}]}]).write_parquet(path)
    boxes = load_records(path, "depth.parquet").filter(kind="box")
    assert boxes.select("label", "bbox_depth", "reject_reason").rows() == [
        ("car", 0.25, None), (None, None, "invalid_record"), ("cup", None, None)]
    assert "got nan" in boxes["reject_detail"][1]


def test_fact_ids_of_boxes_without_depth_unchanged():
    head, *subtrees = NO_DEPTH_TEXT.split("\n- ")  # the counts line + header, then one text per subtree
    expected = [head.splitlines()[0], *subtrees]
    assert [f.fact_id for f in facts_for({"image_id": "i", "boxes": NO_DEPTH})] == [
        content_hash("i", "object", t) for t in expected]

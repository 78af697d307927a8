"""Two dataset versions side by side: the rules of sql/version_diff.sql, which visit_assets.lib.versions
runs in memory and the catalog offers as `version_diff(...)`; both ways are checked against expectations.

1. Real: ingest + grouping of the sample, 2 captions edited (in two different shards), again:
   exactly those 2 images changed, for the reason "metadata" (field: captions), nothing else.
2. Synthetic store: every kind of change and reason, every way of finding a partition's rows
   (exact / not re-run / rewritten at the same data version / two files of one version / asset
   absent), in both directions, and a selection that carries its conversations' lineage.
"""

import json
import os
import shutil

import dagster as dg
import duckdb
import polars as pl
import pytest

from visit_assets import cli, settings
from visit_assets.definitions import defs
from visit_assets.lib import versions
from visit_assets.lib.catalog import build_catalog
from visit_assets.lib.ids import image_id, shard_of
from visit_assets.lib.storage import ParquetStore
from visit_assets.runner import run_dataset

INGEST = ["source_records", "grouped_metadata", "metadata_rejects", "vlm_descriptions", "image_descriptions"]


def _catalog_changes(store, dataset: str, old: str, new: str) -> list[dict]:
    """version_diff as a user queries it in the catalog."""
    con = duckdb.connect(str(build_catalog(store)), read_only=True)
    try:
        rows = con.execute("SELECT * FROM version_diff(?, ?, ?)", [dataset, old, new]).pl()
    finally:
        con.close()
    return rows.sort("asset", "item_id").to_dicts()


def _changes(store, dataset: str, old: str, new: str) -> list[dict]:
    return versions.version_changes(store, dataset, old, new).sort("asset", "item_id").to_dicts()


# --- 1. the sample, two real dataset versions ------------------------------------------------------

def _edit_two_captions(home) -> list[str]:
    """Rewrite one caption of two images in different shards; returns their image keys."""
    path = home / "datasets" / "sample" / "annotations" / "captions.json"
    data = json.loads(path.read_text())
    captioned = {a["image_id"] for a in data["annotations"]}
    chosen, shards = {}, set()
    for image in sorted(data["images"], key=lambda i: i["file_name"]):
        shard = shard_of(image["file_name"], settings.n_shards())
        if image["id"] in captioned and shard not in shards:
            chosen[image["id"]] = image["file_name"]
            shards.add(shard)
        if len(chosen) == 2:
            break
    done = set()
    for ann in data["annotations"]:
        if ann["image_id"] in chosen and ann["image_id"] not in done:
            ann["caption"] = f"An entirely new caption written for the {chosen[ann['image_id']][:-4]} photograph."
            done.add(ann["image_id"])
    path.write_text(json.dumps(data))
    return sorted(chosen.values())


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    """A private VISIT_HOME (as the `home` fixture, shared by this module's tests) with two versions."""
    home = tmp_path_factory.mktemp("versions")
    shutil.copytree(settings.sample_dataset(), home / "datasets" / "sample")
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("VISIT_HOME", str(home))
        for var in ("VISIT_STORE", "VISIT_DATASETS"):
            mp.delenv(var, raising=False)
        run_dataset(defs, "sample", instance, only=INGEST, log=lambda _: None)
        keys = _edit_two_captions(home)
        run_dataset(defs, "sample", instance, only=INGEST, log=lambda _: None)
    store = home / "store"
    old, new = versions.latest_versions(store, "sample")
    return store, old, new, keys


def test_two_edited_captions_are_exactly_two_changed_images_because_of_metadata(two_versions):
    store, old, new, keys = two_versions
    assert [v["dataset_version"] for v in versions.dataset_versions(store, "sample")] == [old, new]
    diff = versions.diff_versions(store, "sample")  # defaults: the two most recent versions
    assert (diff["old"], diff["new"]) == (old, new)
    grouped = diff["assets"]["grouped_metadata"]
    images = grouped["rows"]["new"]
    assert images >= 12 and grouped["rows"]["old"] == images
    assert grouped["counts"] == {"added": 0, "removed": 0, "changed": 2, "unchanged": images - 2}
    assert grouped["reasons"] == {"metadata": 2}
    changed = grouped["examples"]["changed"]
    assert sorted(e["image_key"] for e in changed) == keys
    assert {e["id"] for e in changed} == {image_id("sample", k) for k in keys}
    assert all(e["reasons"] == ["metadata"] and e["fields"] == ["captions"] for e in changed)
    # The conversation assets and the selection were not materialized here: reported, not an error.
    for asset in ("generated_conversations", "filtered_conversations", "selected_subset"):
        assert diff["assets"][asset]["absent"] is True
    # Untouched shards were rewritten at their unchanged data version (the old rows are gone from
    # disk): found as "later", and still compared as equal.
    assert sum(grouped["partitions"]["old"].values()) == settings.n_shards()
    # The other direction, and a version against itself.
    back = versions.diff_versions(store, "sample", new, old)["assets"]["grouped_metadata"]["counts"]
    assert back["changed"] == 2 and back["added"] == back["removed"] == 0
    assert versions.version_changes(store, "sample", new, new).is_empty()


def test_the_catalog_answers_version_diff_on_the_sample(two_versions):
    store, old, new, keys = two_versions
    expected = [{"asset": "grouped_metadata", "item_id": i, "image_id": i, "change": "changed", "reasons": ["metadata"]}
                for i in sorted(image_id("sample", k) for k in keys)]
    for a, b in ((old, new), (new, old)):
        assert _changes(store, "sample", a, b) == expected
        assert _catalog_changes(store, "sample", a, b) == expected


def test_manifest_changes_is_small_json(two_versions):
    store, old, new, keys = two_versions
    section = versions.manifest_changes(store, "sample", old, new)
    assert json.loads(json.dumps(section)) == section
    grouped = section["assets"]["grouped_metadata"]
    assert (grouped["changed"], grouped["added"], grouped["removed"]) == (2, 0, 0)
    assert grouped["reasons"] == {"metadata": 2}
    assert sorted(grouped["examples"]["changed"]) == sorted(image_id("sample", k) for k in keys)
    assert set(section["assets"]) == {"grouped_metadata"}  # absent assets are left out
    assert versions.manifest_changes(store, "sample", None, new)["first"] is True
    assert versions.manifest_changes(store, "sample", new, new)["same_version"] is True


def test_cli_diff_prints_a_summary(two_versions, capsys, monkeypatch):
    store, old, new, keys = two_versions
    monkeypatch.setenv("VISIT_HOME", str(store.parent))
    monkeypatch.delenv("VISIT_STORE", raising=False)
    assert cli.main(["diff", "sample"]) == 0
    out = capsys.readouterr().out
    assert f"{old} -> {new}" in out and "2 changed" in out and all(k in out for k in keys)
    assert cli.main(["diff", "sample", "--old", new, "--new", old, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["assets"]["grouped_metadata"]["counts"]["changed"] == 2
    assert cli.main(["diff", "sample", "--old", "nosuchversion"]) == 2


# --- 2. a synthetic store: every rule ---------------------------------------------------------------

BOX = pl.Struct({"label": pl.String, "x1": pl.Float64, "y1": pl.Float64, "x2": pl.Float64, "y2": pl.Float64})
QA = pl.Struct({"question": pl.String, "answer": pl.String})
TURN = pl.Struct({"from": pl.String, "value": pl.String})
GROUPED = {"image_key": pl.String, "image_id": pl.String, "shard": pl.Int32, "width": pl.Int64, "height": pl.Int64,
           "image_mode": pl.String, "image_checked": pl.Boolean, "captions": pl.List(pl.String),
           "boxes": pl.List(BOX), "qa": pl.List(QA), "ocr": pl.List(pl.String), "sources": pl.List(pl.String),
           "source_record_ids": pl.List(pl.String), "dataset": pl.String, "dataset_version": pl.String,
           "code_version": pl.String}
CONVERSATION = {"conversation_id": pl.String, "image_id": pl.String, "turns": pl.List(TURN), "prompt_id": pl.String,
                "prompt_version": pl.Int64, "dataset": pl.String, "dataset_version": pl.String,
                "code_version": pl.String, "llm_model": pl.String, "llm_weights": pl.String,
                "sampling_config": pl.String}


def _image(key: str, version: str, caption: str = "A plain test caption here.") -> dict:
    return {"image_key": key, "image_id": key, "shard": 0, "width": 200, "height": 100, "image_mode": "RGB",
            "image_checked": True, "captions": [caption],
            "boxes": [{"label": "cat", "x1": 0.1, "y1": 0.2, "x2": 0.5, "y2": 0.9}],
            "qa": [{"question": "What?", "answer": "A cat."}], "ocr": [], "sources": ["c.json"],
            "source_record_ids": [f"c.json#{key}"], "dataset": "d", "dataset_version": version, "code_version": "g1"}


def _conv(cid: str, image: str, version: str, text: str = "It is a cat.", prompt: str = "p1", prompt_version: int = 1,
          weights: str = "w1", code: str = "k1") -> dict:
    return {"conversation_id": cid, "image_id": image, "turns": [{"from": "human", "value": "<image>\nWhat?"},
                                                                 {"from": "gpt", "value": text}],
            "prompt_id": prompt, "prompt_version": prompt_version, "dataset": "d", "dataset_version": version,
            "code_version": code, "llm_model": "m", "llm_weights": weights, "sampling_config": '{"t":0.2}'}


@pytest.fixture
def synthetic(tmp_path):
    root = tmp_path / "store"
    s = ParquetStore(root)
    for version, day in (("v1", "01"), ("v2", "02")):
        s.write("source_records", "d", f"sr-{version}", pl.DataFrame(
            {"record_id": ["r1"], "dataset": ["d"], "dataset_version": [version],
             "ingested_at": [f"2026-01-{day}T00:00:00Z"], "image_id": ["a"], "source": ["c.json"],
             "source_format": ["coco"], "kind": ["caption"], "reject_reason": [None]},
            schema_overrides={"reject_reason": pl.String}), dataset_version=version)  # the catalog's views read these

    def grouped(dv, shard, rows):
        s.write("grouped_metadata", "d", dv, pl.DataFrame(rows, schema=GROUPED), shard,
                dataset_version=rows[0]["dataset_version"])

    def conv(asset, dv, shard, rows, **extra):
        frame = pl.DataFrame(rows, schema=CONVERSATION)
        frame = frame.with_columns(*[pl.lit(v).alias(k) for k, v in extra.items()])
        return s.write(asset, "d", dv, frame, shard, dataset_version=rows[0]["dataset_version"])

    # grouped_metadata: shard 0 re-run (b changed, c added, e removed); shard 1 not re-run for v2;
    # shard 2 only has a v2 file (its v1 rows were rewritten at the same data version).
    grouped("g0-v1", 0, [_image("a", "v1"), _image("b", "v1"), _image("e", "v1")])
    grouped("g0-v2", 0, [_image("a", "v2"), _image("b", "v2", "A different caption now."), _image("c", "v2")])
    grouped("g1-v1", 1, [_image("d", "v1")])
    grouped("g2-same", 2, [_image("g", "v2")])
    # generated_conversations
    conv("generated_conversations", "c0-v1", 0, [_conv("c1", "a", "v1"), _conv("c2", "a", "v1", prompt="p2"),
                                                  _conv("c3", "b", "v1")])
    conv("generated_conversations", "c0-v2", 0, [_conv("c1", "a", "v2"),
                                                  _conv("c2n", "a", "v2", prompt="p2", prompt_version=2),
                                                  _conv("c3", "b", "v2", text="It is a dog.")])
    conv("generated_conversations", "c1-v1", 1, [_conv("c4", "d", "v1")])
    conv("generated_conversations", "c1-v2", 1, [_conv("c4", "d", "v2", weights="w2")])
    conv("generated_conversations", "c2-v1", 2, [_conv("c5", "f", "v1")])  # not re-run for v2
    # shard 3: two files of v2; the newest one is the rows of v2 (and equal to v1's)
    conv("generated_conversations", "c3-v1", 3, [_conv("c6", "h", "v1", text="Y")])
    older = conv("generated_conversations", "c3-v2a", 3, [_conv("c6", "h", "v2", text="X")])
    newer = conv("generated_conversations", "c3-v2b", 3, [_conv("c6", "h", "v2", text="Y")])
    now = int(os.stat(newer).st_mtime)
    os.utime(older, (now - 100, now - 100))
    os.utime(newer, (now - 50, now - 50))
    # filtered_conversations: the filter's code changed
    conv("filtered_conversations", "f0-v1", 0, [_conv("c1", "a", "v1")], filter_version="f1")
    conv("filtered_conversations", "f0-v2", 0, [_conv("c1", "a", "v2")], filter_version="f2")
    # selected_subset: did not exist at v1
    s.write("selected_subset", "d", "s-v2", pl.DataFrame(
        [{"conversation_id": "c3", "image_id": "b", "turns": [{"from": "gpt", "value": "x"}], "dataset": "d",
          "dataset_version": "v2", "code_version": "q1"},
         {"conversation_id": "c1", "image_id": "a", "turns": [{"from": "gpt", "value": "y"}], "dataset": "d",
          "dataset_version": "v2", "code_version": "q1"}]), dataset_version="v2")
    return root


def _change(asset, item, image, change, reason):
    return {"asset": asset, "item_id": item, "image_id": image, "change": change, "reasons": [reason]}


EXPECTED = [
    _change("filtered_conversations", "c1", "a", "changed", "code_version"),
    _change("generated_conversations", "c2", "a", "removed", "prompt"),
    _change("generated_conversations", "c2n", "a", "added", "prompt"),
    _change("generated_conversations", "c3", "b", "changed", "metadata"),
    _change("generated_conversations", "c4", "d", "changed", "model"),
    _change("grouped_metadata", "b", "b", "changed", "metadata"),
    _change("grouped_metadata", "c", "c", "added", "metadata"),
    _change("grouped_metadata", "e", "e", "removed", "metadata"),
    _change("selected_subset", "c1", "a", "added", "other"),
    _change("selected_subset", "c3", "b", "added", "metadata"),
]


# v2 -> v1: the same items and reasons, added and removed swapped (selected_subset is absent at v1).
EXPECTED_BACK = [{**c, "change": {"added": "removed", "removed": "added"}.get(c["change"], c["change"])}
                 for c in EXPECTED]


def test_every_rule_on_a_synthetic_store(synthetic):
    assert _changes(synthetic, "d", "v1", "v2") == EXPECTED
    assert _changes(synthetic, "d", "v2", "v1") == EXPECTED_BACK
    frame, parts = versions.asset_rows(synthetic, "grouped_metadata", "d", "v1")
    assert parts == {"exact": 2, "earlier": 0, "later": 1} and sorted(frame["image_id"]) == ["a", "b", "d", "e", "g"]
    frame, parts = versions.asset_rows(synthetic, "grouped_metadata", "d", "v2")
    assert parts == {"exact": 2, "earlier": 1, "later": 0} and sorted(frame["image_id"]) == ["a", "b", "c", "d", "g"]
    assert versions.asset_rows(synthetic, "selected_subset", "d", "v1") is None
    diff = versions.diff_versions(synthetic, "d", "v1", "v2", examples=1)
    conv = diff["assets"]["generated_conversations"]
    assert conv["counts"] == {"added": 1, "removed": 1, "changed": 2, "unchanged": 3}
    assert conv["reasons"] == {"metadata": 1, "model": 1, "prompt": 2}
    assert len(conv["examples"]["changed"]) == 1
    assert conv["images"]["affected"] == 3
    assert conv["images"]["examples"] == [{"image_id": "a", "image_key": None, "added": 1, "removed": 1, "changed": 0,
                                           "reasons": ["prompt"]}]
    assert diff["assets"]["selected_subset"]["present"] == {"old": False, "new": True}
    text = versions.format_diff(diff)
    assert "no rows at the old version" in text and "why: metadata 1, model 1, prompt 2" in text
    with pytest.raises(ValueError, match="no dataset version"):
        versions.diff_versions(synthetic, "d", "v1", "v9")


def test_the_catalog_answers_version_diff_on_every_rule(synthetic):
    assert _catalog_changes(synthetic, "d", "v1", "v2") == EXPECTED
    assert _catalog_changes(synthetic, "d", "v2", "v1") == EXPECTED_BACK


def test_a_selection_carrying_its_conversations_lineage_gets_their_reasons(synthetic):
    """The selected subset keeps each conversation's prompt and model columns: a kept row whose weights
    and prompt version changed is "model" and "prompt" (a selection without them, above, is "other")."""
    s = ParquetStore(synthetic)
    for version, weights, prompt_version in (("v1", "w1", 1), ("v2", "w2", 2)):
        row = _conv("k1", "z", version, weights=weights, prompt_version=prompt_version)
        s.write("selected_subset", "d2", f"s-{version}", pl.DataFrame([row], schema=CONVERSATION), dataset_version=version)
        s.write("source_records", "d2", f"sr-{version}", pl.DataFrame(
            {"record_id": ["r1"], "dataset": ["d2"], "dataset_version": [version],
             "ingested_at": [f"2026-01-0{version[1]}T00:00:00Z"]}), dataset_version=version)
    expected = [_change("selected_subset", "k1", "z", "changed", "model") | {"reasons": ["model", "prompt"]}]
    assert _changes(synthetic, "d2", "v1", "v2") == expected
    assert _catalog_changes(synthetic, "d2", "v1", "v2") == expected


def test_catalog_lineage_and_rejects_cover_every_image_after_an_edit(two_versions):
    """Unchanged shards keep the rows of the version that first produced them; the lineage view
    still traces every current image to its source records."""
    store = two_versions[0]
    grouped = pl.concat([ParquetStore(store).read("grouped_metadata", "sample", s) for s in range(settings.n_shards())])
    con = duckdb.connect(str(build_catalog(store)), read_only=True)
    try:
        traced = con.execute("SELECT DISTINCT image_id FROM image_lineage").pl()
        stages = {r[0] for r in con.execute("SELECT DISTINCT stage FROM rejects_by_reason").fetchall()}
    finally:
        con.close()
    assert set(traced["image_id"]) == set(grouped["image_id"])
    assert stages == {"ingest"}  # only the ingest ran here

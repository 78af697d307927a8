"""The visual_genome loader on small files in the release's on-disk format (v1.2 / v1.4)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import polars as pl
import pytest
from PIL import Image
from polars.testing import assert_frame_equal

from visit_assets.lib.metadata.dataset import dataset_version, load_dataset, read_layout
from visit_assets.lib.metadata.grouping import QCConfig, group_records
from visit_assets.lib.metadata.images import probe_images
from visit_assets.lib.metadata.loaders import detect_format, registry
from visit_assets.lib.metadata.loaders import visual_genome as vg

DATA = Path(__file__).parent.parent / "data" / "loaders" / "visual_genome"
IMG, OBJ, REG, QAS = "image_data.json", "objects.json", "region_descriptions.json", "question_answers.json"
LISTS = {OBJ: "objects", REG: "regions", QAS: "qas"}


@pytest.fixture
def load(loaded):
    """load(...): the loaded and checked frame of one fixture file (conftest.check_records)."""
    def run(folder: str, name: str, root: Path = DATA) -> pl.DataFrame:
        return loaded(vg.load_visual_genome, root / folder / name, f"{folder}/{name}", "visual_genome")
    return run


def _doc(folder: str, name: str) -> list:
    return json.loads((DATA / folder / name).read_text(encoding="utf-8"))


def _kinds(df: pl.DataFrame) -> dict[str, int]:
    return dict(df.group_by("kind").len().rows())


def _reasons(df: pl.DataFrame) -> dict[str, str | None]:
    return dict(df.select("record_id", "reject_reason").rows())


def _n_input_records(folder: Path, names) -> int:
    """Image entries plus annotation items; an entry without its list counts as one record."""
    n = 0
    for name in names:
        doc = json.loads((folder / name).read_text(encoding="utf-8"))
        if name == IMG:
            n += len(doc)
        else:
            n += sum(len(e[LISTS[name]]) if isinstance(e, dict) and isinstance(e.get(LISTS[name]), list) else 1
                     for e in doc)
    return n


def _dataset(tmp_path: Path, names=(IMG, OBJ, REG, QAS), case: str = "good") -> Path:
    root = tmp_path / "vg_ds"
    root.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(DATA / case / name, root / name)
    return root


# ------------------------------------------------------------------------------------------------
# records
# ------------------------------------------------------------------------------------------------


def test_image_data_alone_gives_image_records_with_keys_and_sizes(load):
    df = load("good", IMG)
    assert _kinds(df) == {"image": 4}
    assert df.select("record_id", "image_key", "width", "height").rows() == [
        (f"good/{IMG}#image/{e['image_id']}", "/".join(e["url"].split("/")[-2:]), e["width"], e["height"])
        for e in _doc("good", IMG)
    ]
    assert df["image_key"].to_list()[:3] == ["VG_100K_2/1.jpg", "VG_100K_2/2.jpg", "VG_100K/107899.jpg"]
    assert df["reject_reason"].null_count() == df.height


def test_objects_give_pixel_boxes_labelled_by_first_name(load):
    df = load("good", OBJ)
    objects = [(e["image_id"], o) for e in _doc("good", OBJ) for o in e["objects"]]
    keys = {e["image_id"]: "/".join(e["url"].split("/")[-2:]) for e in _doc("good", IMG)}
    boxes = df.filter(pl.col("kind") == "box")
    assert boxes.select("record_id", "image_key", "label", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "bbox_norm").rows() == [
        (f"good/{OBJ}#box/{o['object_id']}", keys[i], o["names"][0], o["x"], o["y"], o["w"], o["h"], False)
        for i, o in objects
    ]
    assert boxes.filter(pl.col("record_id").str.ends_with("/5046"))["label"].item() == "sky"  # of ["sky", "blue sky"]
    assert df["reject_reason"].null_count() == df.height


def test_regions_are_boxes_labelled_by_normalised_phrase(load):
    df = load("good", REG)
    assert _kinds(df) == {"box": 5}
    assert df.select("record_id", "label").rows() == [
        (f"good/{REG}#box/1382", "the clock is green in colour"),
        (f"good/{REG}#box/1383", "shade is along the street"),  # whitespace collapsed, first letter lower-cased
        (f"good/{REG}#box/5021", "a blue sky with clouds"),  # final period dropped
        (f"good/{REG}#box/4089001", "man walking a small dog"),
        (f"good/{REG}#box/2203418", "TV on the wall"),  # an acronym keeps its case
    ]
    first = _doc("good", REG)[0]["regions"][0]
    assert df.select("bbox_x", "bbox_y", "bbox_w", "bbox_h").row(0) == (first["x"], first["y"], first["width"],
                                                                      first["height"])
    assert not df["bbox_norm"].any()


@pytest.mark.parametrize("case", ["good", "bad"])
@pytest.mark.parametrize("name", [OBJ, REG, QAS])
def test_typed_and_generic_decoding_give_the_same_rows(monkeypatch, case, name, load):
    fast = load(case, name)
    monkeypatch.setattr(vg, "_ENTRIES", msgspec.json.Decoder(list[int]))  # every file takes the generic path
    assert_frame_equal(load(case, name), fast)


def test_question_answers_give_qa_records(load):
    df = load("good", QAS)
    qas = [q for e in _doc("good", QAS) for q in e["qas"]]
    assert _kinds(df) == {"qa": len(qas)}  # no image records: objects.json (first by name) emits those
    assert df.select("record_id", "text", "answer").rows() == [
        (f"good/{QAS}#qa/{q['qa_id']}", q["question"], q["answer"]) for q in qas
    ]
    assert df["image_key"].null_count() == 0


def test_image_records_are_emitted_once_by_the_first_annotation_file(load):
    assert vg.image_records_owner(DATA / "good").name == OBJ
    assert _kinds(load("good", OBJ))["image"] == 4
    assert "image" not in _kinds(load("good", REG)) and "image" not in _kinds(load("good", QAS))
    # image records carry image_data.json's source name whoever emits them, so their ids never change
    assert load("good", OBJ).filter(pl.col("kind") == "image")["record_id"].to_list() == \
        load("good", IMG)["record_id"].to_list()


# ------------------------------------------------------------------------------------------------
# detection and companions
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [IMG, OBJ, REG, QAS])
def test_each_release_file_is_detected(name):
    assert detect_format(DATA / "good" / name) == "visual_genome"


def test_coco_llava_and_other_files_are_not_taken(sample_dir, tmp_path):
    for p in [*sample_dir.rglob("*.json"), *sample_dir.rglob("*.jsonl")]:
        head = p.read_bytes()[: registry.HEAD_BYTES]
        assert vg.detect(p, head) == registry.NO, p
    others = {
        "scene_graphs.json": [{"image_id": 1, "objects": [{"object_id": 1, "names": ["a"], "x": 0, "y": 0, "w": 1,
                                                           "h": 1}], "relationships": []}],
        "region_graphs.json": [{"image_id": 1, "regions": [{"region_id": 1, "width": 5, "height": 5, "image_id": 1,
                                                             "phrase": "a b", "y": 0, "x": 0, "objects": [],
                                                             "relationships": [], "synsets": []}]}],
        "attributes.json": [{"image_id": 1, "attributes": [{"object_id": 1, "names": ["a"], "attributes": ["red"]}]}],
        "list.json": [{"id": 1, "caption": "x"}],
        "empty.json": [],
        "coco.json": {"images": [], "annotations": []},
    }
    for name, doc in others.items():
        (tmp_path / name).write_text(json.dumps(doc))
        assert vg.detect(tmp_path / name, (tmp_path / name).read_bytes()) == registry.NO, name


def test_a_first_entry_longer_than_the_head_is_still_detected(tmp_path):
    entry = {"image_id": 1, "objects": [{"synsets": ["tree.n.01"], "h": 5, "object_id": i, "merged_object_ids": [],
                                         "names": ["tree"], "w": 5, "y": 0, "x": 0} for i in range(2000)]}
    qas = {"id": 1, "qas": [{"a_objects": [], "question": "Why?" * 20, "image_id": 1, "qa_id": i, "answer": "So.",
                             "q_objects": []} for i in range(2000)]}
    for name, doc in ((OBJ, entry), (QAS, qas)):
        (tmp_path / name).write_text(json.dumps([doc]))
        assert len((tmp_path / name).read_bytes()) > registry.HEAD_BYTES
        assert detect_format(tmp_path / name) == "visual_genome"


def test_image_data_is_the_companion_of_the_annotation_files(tmp_path):
    root = _dataset(tmp_path)
    layout = read_layout(root)
    assert sorted(layout.source_name(p) for p, _ in layout.sources) == [OBJ, QAS, REG]
    assert [layout.source_name(p) for p in layout.companions] == [IMG]
    version = dataset_version(layout)
    data = json.loads((root / IMG).read_text())
    data[0]["width"] = 801
    (root / IMG).write_text(json.dumps(data))
    assert dataset_version(read_layout(root)) != version  # a companion edit is a new version


def test_image_data_alone_is_a_source(tmp_path):
    layout = read_layout(_dataset(tmp_path, (IMG,)))
    assert [layout.source_name(p) for p, _ in layout.sources] == [IMG] and layout.companions == ()
    assert _kinds(load_dataset(layout, n_shards=1)) == {"image": 4}


def test_one_annotation_file_with_image_data(tmp_path):
    layout = read_layout(_dataset(tmp_path, (IMG, QAS)))
    assert [layout.source_name(p) for p, _ in layout.sources] == [QAS]
    assert [layout.source_name(p) for p in layout.companions] == [IMG]
    records = load_dataset(layout, n_shards=1)
    assert _kinds(records) == {"image": 4, "qa": 4}  # question_answers.json is now the first annotation file


# ------------------------------------------------------------------------------------------------
# accounting and bad input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["good", "bad"])
def test_every_input_record_is_one_row(tmp_path, case):
    root = _dataset(tmp_path, case=case)
    records = load_dataset(read_layout(root), n_shards=1)
    assert records.height == _n_input_records(root, (IMG, OBJ, REG, QAS))
    assert records["record_id"].n_unique() == records.height
    assert records.filter(pl.col("kind") == "image").height == len(_doc(case, IMG))


def test_bad_records_are_rejected_with_reasons_and_good_ones_kept(load):
    images = _reasons(load("bad", IMG))
    assert images == {
        f"bad/{IMG}#image/1": None,
        f"bad/{IMG}#image/5": "invalid_record",  # no url
        f"bad/{IMG}#image/6": "invalid_record",  # width 0
        f"bad/{IMG}#image/1@3": "duplicate_record_id",
        f"bad/{IMG}#image/@4": "invalid_record",  # not an object
        f"bad/{IMG}#image/7": "unsafe_path",  # url path climbs out of the image folder
    }
    objects = _reasons(load("bad", OBJ))
    assert {k: v for k, v in objects.items() if "#image/" not in k} == {
        f"bad/{OBJ}#box/10": None,
        f"bad/{OBJ}#box/11": "box_out_of_bounds",  # w = 0
        f"bad/{OBJ}#box/12": "invalid_record",  # no names
        f"bad/{OBJ}#box/13": "invalid_record",  # names = []
        f"bad/{OBJ}#box/14": "invalid_record",  # x is a string
        f"bad/{OBJ}#box/@0.5": "invalid_record",  # no object_id
        f"bad/{OBJ}#box/10@0.6": "duplicate_record_id",
        f"bad/{OBJ}#box/@0.7": "invalid_record",  # item not an object
        f"bad/{OBJ}#box/20": "unknown_image_id",
        f"bad/{OBJ}#box/21": "invalid_record",  # its image entry was rejected (no url)
        f"bad/{OBJ}#box/22": "unsafe_path",  # its image entry was rejected (unsafe path)
        f"bad/{OBJ}#entry/@4": "invalid_record",  # entry not an object
        f"bad/{OBJ}#entry/@5": "invalid_record",  # entry without an objects list
    }
    assert _reasons(load("bad", REG)) == {
        f"bad/{REG}#box/30": "text_too_long",  # 16 words
        f"bad/{REG}#box/31": "invalid_record",  # blank phrase
        f"bad/{REG}#box/32": "box_out_of_bounds",  # negative height
        f"bad/{REG}#box/33": None,
        f"bad/{REG}#box/34": "unknown_image_id",
    }
    assert _reasons(load("bad", QAS)) == {
        f"bad/{QAS}#qa/40": None,
        f"bad/{QAS}#qa/41": "invalid_record",  # no answer
        f"bad/{QAS}#qa/42": "invalid_record",  # question not a string
        f"bad/{QAS}#qa/43": "invalid_record",  # its image (width 0) was rejected
        f"bad/{QAS}#qa/44": "unknown_image_id",
    }


def test_missing_image_data_rejects_every_annotation(tmp_path):
    layout = read_layout(_dataset(tmp_path, (OBJ, QAS), case="missing_companion"))
    assert layout.companions == ()
    records = load_dataset(layout, n_shards=1)
    assert records.height == _n_input_records(DATA / "missing_companion", (OBJ, QAS))
    assert set(records["reject_reason"]) == {"missing_companion"}
    assert records["image_key"].null_count() == records.height


def test_unreadable_image_data_is_one_file_row_and_rejects_every_annotation(tmp_path):
    layout = read_layout(_dataset(tmp_path, (IMG, QAS, REG), case="broken_companion"))
    assert [layout.source_name(p) for p in layout.companions] == [IMG]
    records = load_dataset(layout, n_shards=1)
    assert _reasons(records.filter(pl.col("kind") == "invalid")) == {f"{IMG}#file": "malformed_file"}
    rest = records.filter(pl.col("kind") != "invalid")
    assert rest.height == _n_input_records(DATA / "broken_companion", (QAS, REG))
    assert set(rest["reject_reason"]) == {"missing_companion"}


def test_malformed_annotation_file_is_one_reject_row(load):
    assert _reasons(load("malformed", OBJ)) == {f"malformed/{OBJ}#file": "malformed_file"}


def test_a_malformed_first_annotation_file_still_emits_the_image_records(tmp_path):
    root = _dataset(tmp_path, (IMG, QAS))
    first = json.dumps(_doc("good", OBJ)[0])
    (root / OBJ).write_text(f'[{first}, {{"image_id": 2, "obj')  # truncated after its first entry
    layout = read_layout(root)
    assert sorted(layout.source_name(p) for p, _ in layout.sources) == [OBJ, QAS]
    records = load_dataset(layout, n_shards=1)
    assert _kinds(records) == {"image": 4, "invalid": 1, "qa": 4}
    assert _reasons(records.filter(pl.col("kind") == "invalid")) == {f"{OBJ}#file": "malformed_file"}


def test_not_a_list_and_unknown_entries_are_file_rejects(tmp_path):
    (tmp_path / OBJ).write_text('{"objects": []}')
    (tmp_path / "other.json").write_text('[{"foo": 1}]')
    assert _reasons(vg.load_visual_genome(tmp_path / OBJ, OBJ)) == {f"{OBJ}#file": "unknown_format"}
    assert _reasons(vg.load_visual_genome(tmp_path / "other.json", "other.json")) == {"other.json#file": "unknown_format"}


# ------------------------------------------------------------------------------------------------
# end to end: grouping
# ------------------------------------------------------------------------------------------------


def test_grouping_gives_one_record_per_image_with_boxes_qa_and_regions(tmp_path):
    root = _dataset(tmp_path)
    for entry in _doc("good", IMG):  # the images, at the keys the zips unpack to
        target = root / "images" / "/".join(entry["url"].split("/")[-2:])
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (entry["width"], entry["height"]), (90, 120, 150)).save(target, quality=60)
    layout = read_layout(root)
    records = load_dataset(layout, n_shards=1)
    keys = records["image_key"].drop_nulls().unique().to_list()
    grouped, rejects = group_records(records, probe_images(layout.images_dir, keys), QCConfig())
    placed = grouped["source_record_ids"].explode().drop_nulls().to_list() + rejects["record_id"].to_list()
    assert sorted(placed) == sorted(records["record_id"].to_list())  # every record in exactly one place
    assert rejects.height == 0
    assert grouped.height == 4 and grouped["image_key"].n_unique() == 4
    one = grouped.filter(pl.col("image_key") == "VG_100K_2/1.jpg").row(0, named=True)
    labels = [b["label"] for b in one["boxes"]]
    assert labels == ["trees", "sidewalk", "clock", "the clock is green in colour", "shade is along the street"]
    assert [q["question"] for q in one["qa"]] == ["What color is the clock?", "What is the sidewalk made of?"]
    assert (one["width"], one["height"]) == (800, 600)
    clock = one["boxes"][2]
    assert (clock["x1"], clock["y1"], clock["x2"], clock["y2"]) == pytest.approx((421 / 800, 91 / 600, 500 / 800,
                                                                                  430 / 600))
    assert one["sources"] == [IMG, OBJ, QAS, REG]
    tv = grouped.filter(pl.col("image_key") == "VG_100K/2417890.jpg").row(0, named=True)
    assert [b["label"] for b in tv["boxes"]] == ["TV on the wall"] and len(tv["qa"]) == 1  # no objects, a region
    assert grouped["image_checked"].all()

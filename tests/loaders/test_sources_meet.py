"""Records of one picture from different datasets meet in one grouped record: COCO 2014 captions
and VQAv2 questions name COCO's images the same way (COCO_<subtype>_<12-digit id>.jpg), and every
other name of a COCO picture (2017 names, Visual Genome's coco_id) is merged into one key
(lib/metadata/coco_images.py)."""

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from visit_assets.lib.metadata.coco_images import canonical_keys, coco_ids_of_keys
from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.grouping import QCConfig, group_records, images_by_source_count, source_counts
from visit_assets.lib.metadata.images import probe_images

VQA = Path(__file__).resolve().parents[1] / "data" / "loaders" / "vqav2" / "good"


def test_coco_captions_and_vqav2_questions_of_one_image_become_one_record(tmp_path):
    root = tmp_path / "coco_vqa"
    (root / "images").mkdir(parents=True)
    for f in VQA.glob("*.json"):
        shutil.copy(f, root / f.name)
    questions = json.loads((root / "v2_OpenEnded_mscoco_val2014_questions.json").read_text())["questions"]
    ids = sorted({q["image_id"] for q in questions})
    names = {i: f"COCO_val2014_{i:012d}.jpg" for i in ids}
    captions = {"images": [{"id": i, "file_name": names[i], "width": 320, "height": 240} for i in ids],
                "annotations": [{"id": n, "image_id": i, "caption": f"A photo number {n} of a street scene."}
                                for n, i in enumerate(ids)]}
    (root / "annotations").mkdir()
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps(captions))
    for name in names.values():
        Image.new("RGB", (320, 240), (120, 90, 60)).save(root / "images" / name)

    layout = read_layout(root)
    assert sorted(layout.source_name(p) for p, _ in layout.sources) == [
        "annotations/captions_val2014.json", "v2_OpenEnded_mscoco_val2014_questions.json"]
    records = load_dataset(layout, n_shards=1)
    assert set(records["source_format"]) == {"coco", "vqav2"}
    keys = records["image_key"].drop_nulls().unique().to_list()
    grouped, rejects = group_records(records, probe_images(layout.images_dir, keys), QCConfig())
    assert grouped.height == len(ids), rejects.group_by("reason", "detail").len().to_dicts()  # one record per picture
    for row in grouped.iter_rows(named=True):
        assert len(row["captions"]) == 1 and len(row["qa"]) == sum(1 for q in questions
                                                                      if names[q["image_id"]] == row["image_key"])
        assert row["sources"] == ["annotations/captions_val2014.json", "v2_OpenEnded_mscoco_val2014_questions.json"]
    placed = grouped["source_record_ids"].explode().drop_nulls().to_list() + rejects["record_id"].to_list()
    assert sorted(placed) == sorted(records["record_id"].to_list())  # every record in exactly one place


# ------------------------------------------------------------------------------------------------
# seven sources, three namings, one record per picture (coco_images.py)
# ------------------------------------------------------------------------------------------------

PICTURES = {9: (640, 480), 25: (512, 384)}  # COCO ids (both train2014 and train2017 pictures) and COCO sizes
VG_SCALE = 1.25  # Visual Genome's copy of a COCO picture is another size: its boxes are in its own pixels


def _write(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")


def _n14(i: int) -> str:
    return f"COCO_train2014_{i:012d}.jpg"


def _coco_family_folder(root: Path) -> None:
    """Each dataset's files as its release unpacks them (one folder per dataset)."""
    images = [{"id": i, "file_name": _n14(i), "width": w, "height": h} for i, (w, h) in PICTURES.items()]
    _write(root / "coco" / "annotations" / "captions_train2014.json", {"images": images, "annotations": [
        {"id": 100 + i, "image_id": i, "caption": f"A kitchen scene with a table, picture {i}."} for i in PICTURES]})
    cats = [{"id": 1, "name": "person"}, {"id": 2, "name": "dining table"}]
    _write(root / "coco" / "annotations" / "instances_train2014.json", {"images": images, "categories": cats,
           "annotations": [{"id": 200 + i, "image_id": i, "bbox": [10, 20, 64, 48], "category_id": 2}
                           for i in PICTURES]})
    _write(root / "vqa" / "v2_OpenEnded_mscoco_train2014_questions.json", {
        "data_type": "mscoco", "data_subtype": "train2014",
        "questions": [{"image_id": i, "question": "Is there a table?", "question_id": 10 * i} for i in PICTURES]})
    _write(root / "vqa" / "v2_mscoco_train2014_annotations.json", {"annotations": [
        {"question_id": 10 * i, "image_id": i, "multiple_choice_answer": "yes",
         "answers": [{"answer": "yes", "answer_confidence": "yes", "answer_id": 1}]} for i in PICTURES]})
    _write(root / "refcoco" / "instances.json", {"images": images, "categories": cats, "annotations": [
        {"id": 300 + i, "image_id": i, "bbox": [100, 50, 80, 120], "category_id": 1} for i in PICTURES]})
    _write(root / "refcoco" / "refs(unc).json", [
        {"ref_id": i, "ann_id": 300 + i, "image_id": i, "category_id": 1, "split": "train",
         "sentences": [{"sent_id": 400 + i, "sent": "man on the left"}]} for i in PICTURES])
    # Visual Genome: image 1 is no COCO picture; image 2 is COCO picture 25, at VG's own size
    vg = [{"image_id": 1, "url": "https://cs.stanford.edu/people/rak248/VG_100K/1.jpg", "width": 800,
           "height": 600, "coco_id": None, "flickr_id": None},
          {"image_id": 2, "url": "https://cs.stanford.edu/people/rak248/VG_100K/2.jpg",
           "width": int(512 * VG_SCALE), "height": int(384 * VG_SCALE), "coco_id": 25, "flickr_id": None}]
    _write(root / "vg" / "image_data.json", vg)
    _write(root / "vg" / "objects.json", [{"image_id": e["image_id"], "objects": [
        {"object_id": 500 + e["image_id"], "x": 10 * VG_SCALE, "y": 20 * VG_SCALE, "w": 64 * VG_SCALE,
         "h": 48 * VG_SCALE, "names": ["table"]}]} for e in vg])
    _write(root / "vg" / "question_answers.json", [{"id": e["image_id"], "qas": [
        {"qa_id": 600 + e["image_id"], "image_id": e["image_id"], "question": "What is on the table?",
         "answer": "A plate."}]} for e in vg])
    # 2017 names: A-OKVQA by image id and split, LVIS by coco_url
    _write(root / "aokvqa" / "aokvqa_v1p0_train.json", [
        {"split": "train", "image_id": i, "question_id": f"q{i}", "question": "What room is this?",
         "choices": ["kitchen", "bath", "garage", "attic"], "correct_choice_idx": 0,
         "direct_answers": ["kitchen"] * 10, "difficult_direct_answer": False,
         "rationales": [f"There is a stove and a sink in picture {i}."]} for i in PICTURES])
    _write(root / "lvis" / "lvis_v1_train.json", {
        "images": [{"id": i, "coco_url": f"http://images.cocodataset.org/train2017/{i:012d}.jpg", "width": w,
                    "height": h, "neg_category_ids": [], "not_exhaustive_category_ids": []}
                   for i, (w, h) in PICTURES.items()],
        "categories": [{"id": 7, "name": "coffee_mug"}],
        "annotations": [{"id": 700 + i, "image_id": i, "bbox": [5, 5, 40, 40], "category_id": 7} for i in PICTURES]})


def _save(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 90, 60)).save(path, quality=60)


COCO_FILES = {  # the image folder's COCO files, per layout it may hold
    "2017": lambda i: f"train2017/{i:012d}.jpg",
    "2014": lambda i: f"train2014/{_n14(i)}",
    "flat 2014": _n14,
    "both": lambda i: f"train2017/{i:012d}.jpg",  # and the 2014 names as well: the 2017 file wins
}


@pytest.mark.parametrize("layout", list(COCO_FILES))
def test_seven_sources_of_one_picture_make_one_record_whatever_the_naming_on_disk(tmp_path, layout):
    root = tmp_path / "mixed"
    _coco_family_folder(root)
    for i, size in PICTURES.items():
        _save(root / "images" / COCO_FILES[layout](i), size)
        if layout == "both":
            _save(root / "images" / "train2014" / _n14(i), size)
    for vg_id in (1, 2):  # VG's own files: 2.jpg (COCO 25) is found but not the record's key
        _save(root / "images" / "VG_100K" / f"{vg_id}.jpg", (800, 600))

    layout_ = read_layout(root)
    records = load_dataset(layout_, n_shards=4)
    assert set(records["source_format"]) == {"coco", "vqav2", "refcoco", "visual_genome", "aokvqa", "lvis"}
    keys = records["image_key"].drop_nulls().unique().to_list()
    grouped, rejects = group_records(records, probe_images(layout_.images_dir, keys), QCConfig())

    assert rejects.height == 0, rejects.select("record_id", "reason", "detail").to_dicts()
    placed = grouped["source_record_ids"].explode().to_list()
    assert sorted(placed) == sorted(records["record_id"].to_list())  # every record, once
    expected = {COCO_FILES[layout](i) for i in PICTURES} | {"VG_100K/1.jpg"}
    assert sorted(grouped["image_key"]) == sorted(expected)  # one record per picture, at its file
    assert records.group_by("image_key").agg(pl.col("shard").n_unique())["shard"].max() == 1  # one shard each
    for i, (w, h) in PICTURES.items():
        row = grouped.filter(pl.col("image_key") == COCO_FILES[layout](i)).row(0, named=True)
        assert (row["width"], row["height"]) == (w, h)
        assert len(row["sources"]) == 6 + 3 * (i == 25)  # VG's three files name picture 25 only
        assert row["captions"] == [f"There is a stove and a sink in picture {i}.",  # sources in path order
                                   f"A kitchen scene with a table, picture {i}."]
        assert [b["label"] for b in row["boxes"]] == ["dining table", "coffee mug", "man on the left",
                                                      *["table"] * (i == 25)]
        assert len(row["qa"]) == 2 + (i == 25)
        table = [b for b in row["boxes"] if b["label"] in ("dining table", "table")]
        for box in table:  # COCO's box and VG's (in VG's pixels) land on the same fractions
            assert (box["x1"], box["y1"], box["x2"], box["y2"]) == pytest.approx((10 / w, 20 / h, 74 / w, 68 / h))
    vg_only = grouped.filter(pl.col("image_key") == "VG_100K/1.jpg").row(0, named=True)
    assert vg_only["sources"] == ["vg/image_data.json", "vg/objects.json", "vg/question_answers.json"]

    counts = source_counts(records, rejects)  # what grouped_metadata's materialization shows
    assert counts["vg/objects.json"] == {"format": "visual_genome", "images": 2, "kept": {"box": 2}, "rejected": {}}
    assert counts["lvis/lvis_v1_train.json"]["kept"] == {"box": 2, "image": 2}
    assert counts["refcoco/refs(unc).json"]["kept"] == {"box": 2, "image": 2}
    assert counts["aokvqa/aokvqa_v1p0_train.json"]["kept"] == {"caption": 2, "image": 2, "qa": 2}
    assert {s: c["images"] for s, c in counts.items()}["vqa/v2_OpenEnded_mscoco_train2014_questions.json"] == 2
    assert images_by_source_count(grouped) == {"3": 1, "6": 1, "9": 1}


def test_without_image_files_the_pictures_still_meet_under_a_fixed_name(tmp_path):
    """No file on disk (metadata-only grouping): the first layout some record gives is the key."""
    root = tmp_path / "mixed"
    _coco_family_folder(root)
    records = load_dataset(read_layout(root), n_shards=1)
    grouped, rejects = group_records(records, None, QCConfig())
    assert sorted(grouped["image_key"]) == ["VG_100K/1.jpg", "train2017/000000000009.jpg",
                                            "train2017/000000000025.jpg"]
    assert rejects.height == 0
    own = records.filter(pl.col("source_format") == "vqav2", pl.col("kind") == "image")
    assert sorted(own["source_image_key"]) == [_n14(9), _n14(25)]  # the loader's own key is kept


def test_the_rule_on_keys_alone():
    ids = {"COCO_val2014_000000000042.jpg": 42, "val2017/000000000042.jpg": 42, "VG_100K/7.jpg": 42,
           "VG_100K/8.jpg": 8}
    on_disk = {"val2014/COCO_val2014_000000000042.jpg", "VG_100K/7.jpg"}
    assert canonical_keys(ids, on_disk, on_disk.__contains__) == {
        "COCO_val2014_000000000042.jpg": "val2014/COCO_val2014_000000000042.jpg",
        "val2017/000000000042.jpg": "val2014/COCO_val2014_000000000042.jpg",
        "VG_100K/7.jpg": "val2014/COCO_val2014_000000000042.jpg"}
    assert canonical_keys({"VG_100K/7.jpg": 42}, set(), {"VG_100K/7.jpg"}.__contains__) == {}  # no COCO file
    assert canonical_keys(ids, set(), lambda _: False) == {  # no file at all: the best name a record gives
        "COCO_val2014_000000000042.jpg": "val2017/000000000042.jpg", "VG_100K/7.jpg": "val2017/000000000042.jpg"}
    frame = pl.DataFrame({"image_key": ["COCO_val2014_000000000042.jpg", "VG_100K/9.jpg", "x/000000000001.jpg",
                                        "abstract_v002_train2015_000000000001.png"],
                          "kind": ["image"] * 4, "coco_id": [43, 5, None, None], "reject_reason": [None] * 4})
    assert coco_ids_of_keys(frame) == {"VG_100K/9.jpg": 5}  # two ids for one key, or no COCO shape: left alone

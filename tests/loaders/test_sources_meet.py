"""Records of one picture from different datasets meet in one grouped record: COCO 2014 captions
and VQAv2 questions name COCO's images the same way (COCO_<subtype>_<12-digit id>.jpg)."""

import json
import shutil
from pathlib import Path

from PIL import Image

from visit_assets.lib.metadata.dataset import load_dataset, read_layout
from visit_assets.lib.metadata.grouping import QCConfig, group_records
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

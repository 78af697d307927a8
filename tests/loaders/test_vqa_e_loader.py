"""The vqa_e loader on a small file in VQA-E's on-disk format (a VQA-E_<split>_set.json list)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from visit_assets.lib.metadata.loaders import detect_format
from visit_assets.lib.metadata.loaders.vqa_e import load_vqa_e

DATA = Path(__file__).parent.parent / "data" / "loaders" / "vqa_e"
NAME = "VQA-E_val_set.json"


def test_questions_answers_and_explanations_as_captions_on_coco_2014_names(loaded):
    df = loaded(load_vqa_e, DATA / NAME, NAME, "vqa_e")
    rows = {r["record_id"]: r for r in df.iter_rows(named=True)}
    assert rows[f"{NAME}#image/262148"]["image_key"] == "COCO_val2014_000000262148.jpg"  # meets COCO and VQAv2
    assert (rows[f"{NAME}#qa/0"]["text"], rows[f"{NAME}#qa/0"]["answer"]) == ("Where is he looking?", "down")
    assert rows[f"{NAME}#qa/1"]["answer"] == "picnic table"  # no consensus answer: the most common one
    assert rows[f"{NAME}#caption/1"]["text"] == "A man riding a skateboard on top of a picnic table."
    assert f"{NAME}#caption/2" not in rows  # an empty explanation is no caption
    rejects = dict(df.filter(pl.col("reject_reason").is_not_null()).select("record_id", "reject_reason").iter_rows())
    # a bad id, no question, no answer, not an object
    assert rejects == {f"{NAME}#qa/{i}": "invalid_record" for i in (3, 4, 5, 6)}
    assert not any(r.startswith(f"{NAME}#caption/{i}") for r in rows for i in (3, 4, 5))  # a rejected entry's explanation
    assert df.height == 7 + 2 + 2  # entries + distinct usable images + kept explanations


def test_detection_claims_its_file_alone(claims_on_other_fixtures):
    assert detect_format(DATA / NAME) == "vqa_e"
    assert claims_on_other_fixtures("vqa_e", DATA) == []

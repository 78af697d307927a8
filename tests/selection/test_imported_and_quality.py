"""Imported VisIT data, score assembly, ranking outcomes and evaluation pairing (pure logic)."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from visit_assets.lib.ids import image_id
from visit_assets.lib.instructify.export import validate_llava
from visit_assets.lib.selection import evaluation, imported, quality, ranking

DS = "ds"
KNOWN = {image_id(DS, k) for k in ("a.jpg", "b.jpg")}


def llava(image, q, a, **extra):
    return {"image": image, "conversations": [{"from": "human", "value": f"<image>\n{q}"},
                                              {"from": "gpt", "value": a}], **extra}


def load(tmp_path, items, name="x.json", raw=None):
    path = tmp_path / name
    path.write_text(raw if raw is not None else json.dumps(items), encoding="utf-8")
    return imported.load_imported([(path, name)], DS, KNOWN)


def test_llava_and_flat_items_become_rows_with_content_ids(tmp_path):
    rows, rejects = load(tmp_path, [llava("a.jpg", "What is it?", "A cup."),
                                    {"image": "b.jpg", "instruction": "Describe.", "answer": "Bricks."}])
    assert rejects == []
    assert [r["image_key"] for r in rows] == ["a.jpg", "b.jpg"]
    assert rows[1]["turns"] == [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "Bricks."}]
    again, _ = load(tmp_path, [llava("a.jpg", "What is it?", "A cup.")], name="y.json")
    assert again[0]["conversation_id"] == rows[0]["conversation_id"]  # content hash, not file or position


def test_every_bad_item_is_a_reject_with_its_reason(tmp_path):
    items = [
        llava("a.jpg", "Q?", "A."),
        llava("a.jpg", "Q?", "A."),  # duplicate
        llava("../etc/passwd", "Q?", "A."),
        llava("zzz.jpg", "Q?", "A."),  # not a grouped image
        {"image": "a.jpg", "conversations": [{"from": "gpt", "value": "x"}]},
        {"image": "a.jpg", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}]},
        {"image": "a.jpg", "conversations": [{"from": "robot", "value": "q"}]},
        llava("b.jpg", "Q?", "A.", judge_score="high"),
        llava("b.jpg", "Q2?", "A.", clip_score=float("nan")),
        {"conversations": []},
        "just a string",
    ]
    rows, rejects = load(tmp_path, items)
    assert len(rows) == 1 and len(rows) + len(rejects) == len(items)
    assert [r["reason"] for r in rejects] == [
        "duplicate", "unsafe_image_path", "image_not_in_dataset", "turns_not_alternating", "no_answer", "bad_turn",
        "bad_score", "bad_score", "no_image", "not_an_object"]
    assert [r["item_index"] for r in rejects] == list(range(1, 11))


def test_every_row_is_a_valid_llava_item_with_the_image_token_once_in_the_first_turn(tmp_path):
    def turns(*values):
        return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]

    items = [
        {"image": "a.jpg", "instruction": "What is on the table?", "answer": "A cup."},  # flat: token added
        {"image": "a.jpg", "conversations": turns("Describe it.", "Bricks.", "And the colour?", "Red.")},
        {"image": "a.jpg", "conversations": turns("What is this?\n<image>", "A cup.")},  # LLaVA's other placement: kept
        {"image": "b.jpg", "conversations": turns("Describe.", "Bricks.", "<image>\nMore?", "No.")},  # later turn
        {"image": "b.jpg", "conversations": turns("<image> <image> Describe.", "Bricks.")},  # twice
        {"image": "b.jpg", "conversations": turns("Describe.", "Bricks.", "And then?")},  # ends with a question
        {"image": "b.jpg", "conversations": turns("<image>", "Bricks.")},  # no instruction besides the token
    ]
    rows, rejects = load(tmp_path, items)
    assert [r["turns"][0]["value"] for r in rows] == ["<image>\nWhat is on the table?", "<image>\nDescribe it.",
                                                      "What is this?\n<image>"]
    assert rows[1]["turns"][2]["value"] == "And the colour?"  # later turns untouched
    assert [(r["item_index"], r["reason"]) for r in rejects] == [
        (3, "image_token_misplaced"), (4, "image_token_misplaced"), (5, "invalid_llava_item"), (6, "invalid_llava_item")]
    export = [{"id": r["conversation_id"], "image": r["image_key"], "conversations": r["turns"]} for r in rows]
    assert validate_llava(export) == []


def test_an_image_without_grouped_metadata_says_whether_qc_rejected_it(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps([llava("thin.jpg", "Q?", "A."), llava("absent.jpg", "Q?", "A.")]), encoding="utf-8")
    qc = {image_id(DS, "thin.jpg"): "caption_too_short, no_usable_metadata"}
    rows, rejects = imported.load_imported([(path, "x.json")], DS, KNOWN, qc)
    assert rows == [] and [(r["reason"], r["metadata_qc"]) for r in rejects] == [
        ("image_failed_metadata_qc", "caption_too_short, no_usable_metadata"), ("image_not_in_dataset", None)]
    assert json.loads(rejects[0]["detail"])["image"] == "thin.jpg"  # the item as given


def test_an_unreadable_file_is_one_reject_and_other_files_still_load(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(llava("a.jpg", "Q?", "A.")) + "\n", encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image": "a.jpg", ', encoding="utf-8")
    rows, rejects = imported.load_imported([(bad, "bad.json"), (good, "good.jsonl")], DS, KNOWN)
    assert len(rows) == 1 and rows[0]["source"] == "good.jsonl"
    assert rejects[0]["reason"] == "unreadable_file" and "JSONDecodeError" in rejects[0]["detail"]


def test_imported_scores_keep_their_model_or_say_it_is_unnamed(tmp_path):
    rows, _ = load(tmp_path, [llava("a.jpg", "Q?", "A.", judge_score=80, judge_model="gpt-4-0613", clip_score=31.5)])
    row = rows[0]
    assert row["imported_judge"] == 80.0 and row["imported_judge_model"] == "gpt-4-0613"
    assert row["imported_clip"] == 31.5 and row["imported_clip_model"] == "unnamed model (imported from x.json)"
    assert row["imported_reward"] is None and row["imported_reward_model"] is None


def test_merge_prefers_the_imported_value_and_names_each_values_model():
    frame = pl.DataFrame({"imported_judge": [90.0, None, None], "imported_judge_model": ["gpt-4", None, None]})
    values, models = quality.merge_score(frame, "judge", np.array([10.0, 20.0, np.nan]), "smollm2")
    assert values[:2].tolist() == [90.0, 20.0] and math.isnan(values[2])
    assert models == ["gpt-4", "smollm2", None]  # no value, no model


def test_scaled_columns_scale_each_score_over_all_rows():
    cols, records = quality.scaled_columns({"length": np.array([10.0, 30.0, 20.0, np.nan])})
    by = {c.name: c.to_list() for c in cols}
    assert by["length_scaled"] == [0.0, 100.0, 50.0, None]
    assert records["length"]["min"] == 10.0 and records["length"]["max"] == 30.0


def test_ranking_names_why_each_row_was_or_was_not_selected():
    ids = list("abcdef")
    frame = pl.DataFrame({"conversation_id": ids, "image_id": ids, "image_key": ids, "recipe": ["imported"] * 6,
                          "cluster": [0, 0, None, 1, 2, 0], "dataset": [DS] * 6, "dataset_version": ["v"] * 6})
    rows = pl.DataFrame({"id": list("abcde"), "cluster": [0, 0, None, 1, 2], "F": [80.0, 20.0, 50.0, None, 10.0],
                         "rank": [0, 1, None, 0, 0], "in_quota": [True, False, False, False, True],
                         "selected": [True, False, False, False, False]})  # "f" was left out of the pool
    out = ranking.ranking(frame, rows, {"judge": 1.0}, {"method": "per-cluster", "quota_rule": "reference"})
    assert out["outcome"].to_list() == ["selected", "below_cluster_quota", "no_image_cluster", "no_score",
                                        "below_global_cut", "not_in_pool"]
    assert json.loads(out["selection_method"][0]) == {"method": "per-cluster", "quota_rule": "reference"}
    drawn = ranking.ranking(frame, rows, {"judge": 1.0}, {"method": "random"})
    assert drawn["outcome"].to_list()[1:4] == ["not_drawn", "no_image_cluster", "not_drawn"]
    assert drawn["cluster"].to_list() == frame["cluster"].to_list()  # the image's cluster, whatever the method


def test_the_generated_pool_leaves_only_imported_conversations_out():
    frame = pl.DataFrame({"conversation_id": list("abc"), "recipe": ["imported", "instructify", None]})
    assert ranking.pool_rows(frame, "generated")["conversation_id"].to_list() == ["b", "c"]
    assert ranking.pool_rows(frame, "all").height == 3
    with pytest.raises(ValueError, match="pool"):
        ranking.pool_rows(frame, "imported")


def test_pairing_prefers_the_same_instruction_and_is_deterministic():
    cand = [{"conversation_id": "c1", "image_id": "i", "instruction": "What colour?", "answer": "Red."},
            {"conversation_id": "c2", "image_id": "j", "instruction": "Count.", "answer": "Two."},
            {"conversation_id": "c3", "image_id": "k", "instruction": "Q", "answer": "A"}]
    pool = [{"conversation_id": "p1", "image_id": "i", "instruction": "Describe.", "answer": "x"},
            {"conversation_id": "p2", "image_id": "i", "instruction": "what  colour?", "answer": "Blue."},
            {"conversation_id": "p3", "image_id": "j", "instruction": "Describe.", "answer": "y"}]
    pairs, unpaired = evaluation.pair_up(cand, pool, seed=0)
    assert [(p.candidate["conversation_id"], p.baseline["conversation_id"]) for p in pairs] == [("c1", "p2"), ("c2", "p3")]
    assert [u["conversation_id"] for u in unpaired] == ["c3"]
    assert pairs[0].prompt_id == "pairwise-judge" and pairs[1].prompt_id == "pairwise-example-judge"
    ab, ba = pairs[0].messages(True, "a red cup")[1]["content"], pairs[0].messages(False, None)[1]["content"]
    assert ab.index("Red.") < ab.index("Blue.") and ba.index("Blue.") < ba.index("Red.")
    assert "a red cup" in ab and "Description" not in ba
    again, _ = evaluation.pair_up(list(reversed(cand)), list(reversed(pool)), seed=0)
    assert [p.baseline["conversation_id"] for p in again] == ["p2", "p3"]


def test_distribution_ignores_missing_values():
    d = ranking.distribution([np.nan, 0.0, 50.0, 100.0])
    assert d == {"n": 3, "mean": 50.0, "min": 0.0, "p25": 25.0, "median": 50.0, "p75": 75.0, "max": 100.0}
    assert ranking.distribution([]) == {"n": 0}


@pytest.mark.parametrize("raw", ['{"a": 1}', "[1, 2]"])
def test_non_list_or_non_object_items_are_rejected_not_crashing(tmp_path, raw):
    rows, rejects = load(tmp_path, None, raw=raw)
    assert rows == [] and rejects and rejects[0]["reason"] in ("unreadable_file", "not_an_object")

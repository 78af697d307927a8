import json
import math

import numpy as np
import pytest

from visit_assets.lib.selection.final_score import combine, final_scores
from visit_assets.lib.selection.scores import (
    DEFAULT_WEIGHTS,
    JUDGE_AMBIGUOUS,
    JUDGE_EMPTY,
    JUDGE_NO_SCORE,
    JUDGE_NON_INTEGER,
    JUDGE_OK,
    JUDGE_OUT_OF_RANGE,
    JUDGE_PROMPT_ID,
    JUDGE_PROMPT_VERSION,
    JUDGE_RANGE,
    JUDGE_STATUSES,
    JUDGE_WRONG_SCALE,
    clip_score,
    judge_request_messages,
    length_score,
    parse_judge,
    scale_0_100,
)


def test_default_weights_are_paper_table_2():
    assert DEFAULT_WEIGHTS == {"clip": 0.53, "length": 0.10, "reward": 0.10, "judge": 0.27}
    assert math.isclose(sum(DEFAULT_WEIGHTS.values()), 1.0)


def test_length_score():
    assert length_score(["abc", "  ab \n", "", None]).tolist()[:3] == [3.0, 2.0, 0.0]
    assert np.isnan(length_score([None])[0])


def test_clip_score_matches_numpy_by_hand():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((6, 16))
    txt = rng.standard_normal((6, 16))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    expected = [100.0 * float(sum(a * b for a, b in zip(i, t, strict=True))) for i, t in zip(img, txt, strict=True)]
    img[2, 3] = np.nan
    expected[2] = np.nan
    got = clip_score(img.astype(np.float32), txt)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert np.isnan(got[2])
    # hand values: identical -> 100, orthogonal -> 0, opposite -> -100, zero vector -> NaN
    e = np.eye(2)
    got = clip_score([e[0], e[0], e[0], [0, 0]], [e[0], e[1], -e[0], e[1]])
    assert got[:3].tolist() == [100.0, 0.0, -100.0] and np.isnan(got[3])
    with pytest.raises(ValueError):
        clip_score(np.ones((2, 3)), np.ones((3, 3)))


def test_scale_0_100_min_max_and_missing():
    scaled, rec = scale_0_100(np.array([11.8, np.nan, 46.4, 29.1]))
    np.testing.assert_allclose(scaled[[0, 2, 3]], [0.0, 100.0, 50.0])
    assert np.isnan(scaled[1])
    assert rec["method"] == "min-max" and rec["min"] == 11.8 and rec["max"] == 46.4
    assert rec["n"] == 4 and rec["n_missing"] == 1
    json.dumps(rec)
    # reward-like negative range; list input with None
    scaled, rec = scale_0_100([-4.18, None, 8.31])
    assert scaled[0] == 0.0 and scaled[2] == 100.0 and np.isnan(scaled[1])


def test_scale_0_100_edge_cases():
    scaled, rec = scale_0_100(np.array([7.0, 7.0, np.nan]))  # constant column
    assert scaled[:2].tolist() == [50.0, 50.0] and np.isnan(scaled[2])
    assert rec["method"] == "constant->50" and rec["min"] == rec["max"] == 7.0
    scaled, rec = scale_0_100(np.array([np.nan, np.nan]))
    assert np.isnan(scaled).all() and rec["method"] == "all-missing" and rec["min"] is None
    scaled, rec = scale_0_100(np.array([], dtype=float))
    assert scaled.size == 0 and rec["method"] == "all-missing"
    scaled, rec = scale_0_100(np.array([1.0, np.inf, 3.0]))  # inf is not data: NaN, counted
    assert scaled[0] == 0 and scaled[2] == 100 and np.isnan(scaled[1]) and rec["n_nonfinite"] == 1
    scaled, _ = scale_0_100(np.array([5.0]))
    assert scaled.tolist() == [50.0]
    v = np.array([3.0, 1.0])
    scale_0_100(v)
    assert v.tolist() == [3.0, 1.0]  # input untouched


def test_combine_all_scores_present_hand_computed():
    s = {"clip": np.array([100.0, 0.0]), "length": np.array([0.0, 100.0]),
         "reward": np.array([50.0, 50.0]), "judge": np.array([100.0, 0.0])}
    F, used = combine(s)
    # row 0: 0.53*100 + 0.10*0 + 0.10*50 + 0.27*100 = 85; row 1: 0 + 10 + 5 + 0 = 15
    np.testing.assert_allclose(F, [85.0, 15.0])
    assert used == DEFAULT_WEIGHTS


def test_combine_reward_absent_renormalises_weights():
    s = {"clip": np.array([100.0, 0.0]), "length": np.array([0.0, 100.0]),
         "reward": None, "judge": np.array([100.0, 0.0])}
    F, used = combine(s)
    # remaining weights 0.53 + 0.10 + 0.27 = 0.90 -> 0.53/0.9, 0.10/0.9, 0.27/0.9
    assert used["reward"] == 0.0
    assert math.isclose(used["clip"], 0.53 / 0.9) and math.isclose(used["judge"], 0.27 / 0.9)
    assert math.isclose(sum(used.values()), 1.0)
    np.testing.assert_allclose(F, [80.0 / 0.9, 10.0 / 0.9])  # 88.888..., 11.111...
    F2, used2 = combine({k: v for k, v in s.items() if v is not None})  # a missing key = absent
    np.testing.assert_allclose(F2, F)
    assert used2 == used


def test_combine_row_without_judge_renormalises_that_row_only():
    s = {"clip": np.array([60.0, 60.0]), "length": np.array([20.0, 20.0]),
         "reward": np.array([40.0, 40.0]), "judge": np.array([90.0, np.nan])}
    F, used = combine(s)
    assert used == DEFAULT_WEIGHTS
    # row 0: 31.8 + 2 + 4 + 24.3 = 62.1; row 1 (no judge): (31.8 + 2 + 4) / 0.73 = 51.780...
    np.testing.assert_allclose(F, [62.1, 37.8 / 0.73])


def test_combine_both_renormalisations_and_edge_cases():
    s = {"clip": np.array([50.0, np.nan, np.nan]), "length": np.array([100.0, 0.0, np.nan]),
         "reward": None, "judge": np.full(3, np.nan)}  # judge failed everywhere = absent
    F, used = combine(s)
    assert used["judge"] == 0.0 and used["reward"] == 0.0
    assert math.isclose(used["clip"], 0.53 / 0.63) and math.isclose(used["length"], 0.10 / 0.63)
    np.testing.assert_allclose(F[:2], [(0.53 * 50 + 0.10 * 100) / 0.63, 0.0])
    assert np.isnan(F[2])  # no score at all: F is missing, not 0
    F, used = combine({"clip": [10.0, 20.0], "judge": [30.0, 40.0]}, {"clip": 1, "judge": 3})
    np.testing.assert_allclose(F, [25.0, 35.0])
    assert used == {"clip": 0.25, "judge": 0.75}
    with pytest.raises(ValueError, match="no score"):
        combine({"clip": None, "reward": None})
    with pytest.raises(ValueError, match="no weight"):
        combine({"aesthetic": [1.0]})
    with pytest.raises(ValueError, match=">= 0"):
        combine({"clip": [1.0]}, {"clip": -1.0})
    with pytest.raises(ValueError, match="rows"):
        combine({"clip": [1.0, 2.0], "length": [1.0]})


def test_final_scores_min_max_scales_then_combines():
    raw = {"clip": [11.8, 46.4], "length": [10, 30], "reward": None, "judge": [90, 10]}
    F, used, records = final_scores(raw, scaling="min-max")
    # scaled: clip [0, 100], length [0, 100], judge [100, 0]; weights /0.9
    np.testing.assert_allclose(F, [27.0 / 0.9, 63.0 / 0.9])
    assert records["reward"] is None and records["clip"]["min"] == 11.8
    assert used["reward"] == 0.0


def test_final_scores_reference_is_the_public_codes_arithmetic():
    # full_score.py: CLIP and judge as they are, length 10 x chars / 1009, reward the raw logit
    raw = {"clip": [30.8, 46.4], "length": [1009, 2018], "reward": [-4.18, 8.31], "judge": [90, 10]}
    F, used, records = final_scores(raw)
    expected = [0.53 * 30.8 + 0.10 * 10 + 0.10 * -4.18 + 0.27 * 90,
                0.53 * 46.4 + 0.10 * 20 + 0.10 * 8.31 + 0.27 * 10]
    np.testing.assert_allclose(F, expected)
    assert records["length"]["transform"] == "10 x characters / 1009" and records["clip"]["transform"] == "raw"
    assert used == pytest.approx(DEFAULT_WEIGHTS)
    with pytest.raises(ValueError, match="scaling"):
        final_scores(raw, scaling="z-score")


def test_reference_scaling_does_not_rank_a_row_on_part_of_its_scores():
    """Raw scores are on different ranges: a row without its judge score would fall (or, without
    CLIP, rise) if F were the mean of what it has; its F is missing instead. Min-max keeps the mean."""
    raw = {"clip": [30.8, 30.8, np.nan], "length": [500, 500, 500], "reward": None, "judge": [90, np.nan, 90]}
    F, _, _ = final_scores(raw)
    assert np.isfinite(F[0]) and np.isnan(F[1:]).all()
    F, _, _ = final_scores(raw, scaling="min-max")
    assert np.isfinite(F).all()


def test_judge_request_is_versioned_and_text_only():
    msgs = judge_request_messages("  Describe the image.  ", "A cat on a sofa.")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "Describe the image." in msgs[1]["content"] and "A cat on a sofa." in msgs[1]["content"]
    assert "0" in msgs[1]["content"] and "100" in msgs[1]["content"]
    assert JUDGE_PROMPT_ID and JUDGE_PROMPT_VERSION
    assert msgs == judge_request_messages("Describe the image.", "A cat on a sofa.")


@pytest.mark.parametrize("reply,score", [
    ("85", 85), ("Score: 85", 85), ("85/100", 85), ("**85**", 85), ("Score: **85**/100", 85),
    ("Rating: 85 out of 100", 85), ("85%", 85), ("[[85]]", 85), ("(85)", 85), ("score:0/100", 0),
    ("100", 100), ("0", 0), ("85.0", 85), ("Score: 85 (0-100)", 85), ("85 85", 85),
    ("\n\n  92\nThe answer covers 3 objects and 2 colours.", 92),
    ("Here is my rating:\nScore: 77\nIt mentions 2 cats.", 77),
    ("Score: 85\nScore: 85", 85), ("- 85", 85), ("# Score\n**Score:** 64", 64),
])
def test_parse_judge_accepts(reply, score):
    assert parse_judge(reply) == (score, JUDGE_OK)


@pytest.mark.parametrize("reply,status", [
    ("", JUDGE_EMPTY), (None, JUDGE_EMPTY), ("  \n\t", JUDGE_EMPTY),
    ("80-90", JUDGE_RANGE), ("80 to 90", JUDGE_RANGE), ("Score: 80–90", JUDGE_RANGE),
    ("Here:\nScore: 80-90", JUDGE_RANGE),
    ("Score: 85, maybe 90", JUDGE_AMBIGUOUS), ("I would rate this 85 because it covers 3 aspects.", JUDGE_AMBIGUOUS),
    ("Here:\nScore: 80\nScore: 90", JUDGE_AMBIGUOUS), ("GPT-4 says 85", JUDGE_AMBIGUOUS),
    ("101", JUDGE_OUT_OF_RANGE), ("-5", JUDGE_OUT_OF_RANGE), ("Score: 250", JUDGE_OUT_OF_RANGE),
    ("85.5", JUDGE_NON_INTEGER), ("Score: 7.25", JUDGE_NON_INTEGER),
    ("8/10", JUDGE_WRONG_SCALE), ("4 out of 5", JUDGE_WRONG_SCALE), ("Here:\nScore: 8/10", JUDGE_WRONG_SCALE),
    ("Great answer!", JUDGE_NO_SCORE), ("Here is my evaluation.\nIt mentions 3 dogs.", JUDGE_NO_SCORE),
    ("***", JUDGE_NO_SCORE), ("N/A", JUDGE_NO_SCORE), ("eighty-five", JUDGE_NO_SCORE),
])
def test_parse_judge_rejects(reply, status):
    assert parse_judge(reply) == (None, status)
    assert status in JUDGE_STATUSES


def test_scale_0_100_lands_on_both_ends_exactly():
    # (hi - lo) * (100 / (hi - lo)) is 99.99999999999999 for these: the top must still be 100
    lo, hi = 21.02857904154225, 62.94583751464817
    assert (hi - lo) * (100 / (hi - lo)) != 100.0
    scaled, _ = scale_0_100(np.array([lo, 40.0, hi]))
    assert scaled[0] == 0.0 and scaled[2] == 100.0 and 0 < scaled[1] < 100

"""RewardModel: absent by default; a tiny local BERT classifier exercises the real path."""

from __future__ import annotations

import numpy as np
import pytest

from visit_assets.lib.ids import file_sha256
from visit_assets.lib.models.identity import UNCONFIGURED
from visit_assets.lib.models.reward import RewardModel

QUESTIONS = ["What colour is the circle?", "How many dogs are there?", "Describe the scene in detail."]
ANSWERS = ["The circle is red.", "Two.", "A long answer. " * 200]  # the last one is truncated


def test_unconfigured_scores_are_absent():
    rm = RewardModel()
    assert not rm.available
    assert rm.identity.weights == UNCONFIGURED and not rm.identity.is_real
    assert rm.identity.kind == "reward"
    assert rm.score(QUESTIONS, ANSWERS) is None  # absent, not zero


@pytest.mark.slow
def test_tiny_checkpoint_scores(tiny_reward_dir):
    rm = RewardModel(str(tiny_reward_dir), batch_size=2, max_length=128)
    assert rm.identity.weights == file_sha256(tiny_reward_dir / "model.safetensors")
    assert rm.identity.name == tiny_reward_dir.name and rm.identity.is_real
    s = rm.score(QUESTIONS, ANSWERS)
    assert s.shape == (3,) and s.dtype == np.float32 and np.isfinite(s).all()
    np.testing.assert_array_equal(rm.score(QUESTIONS, ANSWERS), s)  # deterministic
    again = RewardModel(str(tiny_reward_dir), batch_size=3, max_length=128)
    np.testing.assert_allclose(again.score(QUESTIONS, ANSWERS), s, atol=1e-5)  # other batching, same scores
    np.testing.assert_allclose(rm.score(QUESTIONS[::-1], ANSWERS[::-1]), s[::-1], atol=1e-5)  # input order kept
    assert rm.score([], []).shape == (0,)
    with pytest.raises(ValueError):
        rm.score(QUESTIONS, ANSWERS[:2])


@pytest.mark.slow
def test_different_weights_different_identity(tiny_reward_dir, tiny_reward_factory, tmp_path):
    other = tiny_reward_factory(tmp_path / "other", seed=1)
    assert RewardModel(str(other)).identity.weights != RewardModel(str(tiny_reward_dir)).identity.weights


@pytest.mark.slow
def test_multi_label_checkpoint_is_rejected(tiny_reward_factory, tmp_path):
    folder = tiny_reward_factory(tmp_path / "two_labels", num_labels=2)
    with pytest.raises(ValueError, match="one logit"):
        RewardModel(str(folder)).score(["q"], ["a"])

import numpy as np
import pytest
from scipy.stats import chisquare

from visit_assets.lib.mminstruct.match import (
    CLIP_IMAGE,
    DEFAULT_TEMPERATURE,
    DESCRIPTION_TEXT,
    match_images,
    sample_instruction,
    similarity,
    softmax_weights,
    top_k,
)


def test_similarity_is_cosine():
    img = np.array([[3.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    ins = np.array([[1.0, 0.0], [0.0, 2.0]])
    s = similarity(img, ins)
    assert s.shape == (3, 2) and s.dtype == np.float32
    np.testing.assert_allclose(s, [[1, 0], [2 ** -0.5, 2 ** -0.5], [0, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="dimension"):
        similarity(img, np.ones((2, 3)))


def test_top_k_orders_and_breaks_ties_by_index():
    m = np.array([[0.1, 0.5, 0.5, 0.2], [0.9, 0.1, 0.3, 0.0]])
    idx, scores = top_k(m, 3)
    assert idx.tolist() == [[1, 2, 3], [0, 2, 1]]
    np.testing.assert_allclose(scores, [[0.5, 0.5, 0.2], [0.9, 0.3, 0.1]])
    assert top_k(m, 10)[0].shape == (2, 4)


def test_sampling_follows_softmax_weights():
    sims = np.array([0.30, 0.28, 0.25, 0.20, 0.10])
    t = 0.05
    expected = np.exp(sims / t) / np.exp(sims / t).sum()
    rng = np.random.default_rng(123)
    n = 20_000
    counts = np.zeros(sims.size)
    for _ in range(n):
        j, p = sample_instruction(sims, t, rng)
        counts[j] += 1
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    assert chisquare(counts, n * expected).pvalue > 1e-3
    np.testing.assert_allclose(counts / n, expected, atol=0.015)


def test_temperature_and_top_k_shape_the_distribution():
    sims = np.array([0.3, 0.2, 0.1])
    sharp, flat = softmax_weights(sims, 0.01), softmax_weights(sims, 10.0)
    assert sharp[0] > 0.99 and np.ptp(flat) < 0.01
    p = softmax_weights(sims, 0.05, top_k=2)
    assert p[2] == 0 and p.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        softmax_weights(sims, 0.0)


def test_match_images_is_seeded_per_image():
    rng = np.random.default_rng(0)
    sims = rng.uniform(0.1, 0.4, size=(6, 10)).astype(np.float32)
    image_ids = [f"img{i}" for i in range(6)]
    ins_ids = [f"ins{j}" for j in range(10)]
    a = match_images(image_ids, sims, ins_ids, matcher=CLIP_IMAGE, seed=5)
    b = match_images(image_ids[::-1], sims[::-1], ins_ids, matcher=CLIP_IMAGE, seed=5)
    assert [m.instruction_id for m in a] == [m.instruction_id for m in b[::-1]]
    single = match_images(image_ids[2:3], sims[2:3], ins_ids, matcher=CLIP_IMAGE, seed=5)[0]
    assert single.index == a[2].index and single.rng_seed == a[2].rng_seed
    m = a[0]
    assert m.temperature == DEFAULT_TEMPERATURE[CLIP_IMAGE] and m.matcher == CLIP_IMAGE
    assert m.probability == pytest.approx(m.probabilities[m.index]) and m.probabilities.sum() == pytest.approx(1.0)
    row = m.as_row(ins_ids, keep_top=3, full=True)
    assert len(row["top_instruction_ids"]) == 3 and len(row["probabilities"]) == 10 and row["matcher"] == "clip-image"
    other = match_images(image_ids, sims, ins_ids, matcher=DESCRIPTION_TEXT, seed=5, temperature=0.5)
    assert other[0].temperature == 0.5 and other[0].rng_seed != m.rng_seed
    with pytest.raises(ValueError, match="matcher"):
        match_images(image_ids, sims, ins_ids, matcher="nope", seed=0)

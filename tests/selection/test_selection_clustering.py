import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from visit_assets.lib.selection.clustering import (
    METHOD_EXACT, METHOD_LANDMARK, METHOD_TRIVIAL, default_landmarks, spectral_clusters,
)


def test_landmark_agrees_with_exact_sklearn(mixture_3000):
    X, truth = mixture_3000
    exact, info_e = spectral_clusters(X, k=10, seed=0)  # 3,000 <= default threshold: exact
    approx, info_a = spectral_clusters(X, k=10, seed=0, exact_max=1000)  # forced over the threshold
    assert info_e["method"] == METHOD_EXACT and info_a["method"] == METHOD_LANDMARK
    ari = adjusted_rand_score(exact, approx)
    print(f"\nARI landmark vs exact = {ari:.3f}; exact vs truth = {adjusted_rand_score(truth, exact):.3f}; "
          f"landmark vs truth = {adjusted_rand_score(truth, approx):.3f}")
    assert ari >= 0.9
    assert adjusted_rand_score(truth, exact) >= 0.9  # the mixture is a fair test: exact recovers it
    assert info_a["params"]["n_landmarks"] == default_landmarks(3000, 10) == 300
    json.dumps(info_a), json.dumps(info_e)  # lineage-ready


def test_method_switch_at_threshold(small_mixture):
    X, _ = small_mixture
    n = len(X)
    _, at = spectral_clusters(X, k=3, exact_max=n)
    _, above = spectral_clusters(X, k=3, exact_max=n - 1)
    assert at["method"] == METHOD_EXACT
    assert at["params"]["affinity"] == "nearest_neighbors"
    assert above["method"] == METHOD_LANDMARK
    assert above["params"]["nearest_landmarks"] == 5


def test_threshold_counts_only_finite_rows(small_mixture):
    X, _ = small_mixture
    X = X.copy()
    X[:5] = np.nan
    labels, info = spectral_clusters(X, k=3, exact_max=len(X) - 5)
    assert info["method"] == METHOD_EXACT and info["n_nonfinite"] == 5
    assert (labels[:5] == -1).all() and (labels[5:] >= 0).all()
    assert sum(info["cluster_sizes"]) == len(X) - 5


@pytest.mark.parametrize("method", [METHOD_EXACT, METHOD_LANDMARK])
def test_deterministic_and_canonical(small_mixture, method):
    X, truth = small_mixture
    a, ia = spectral_clusters(X, k=3, seed=7, method=method)
    b, _ = spectral_clusters(X, k=3, seed=7, method=method)
    assert np.array_equal(a, b)
    assert adjusted_rand_score(truth, a) > 0.95
    sizes = np.bincount(a)
    assert list(sizes) == ia["cluster_sizes"] and list(sizes) == sorted(sizes, reverse=True)


@pytest.mark.parametrize("method", ["auto", METHOD_EXACT, METHOD_LANDMARK])
def test_tiny_inputs(method):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 8)).astype(np.float32)
    labels, info = spectral_clusters(X[:0], k=10, method=method)
    assert labels.shape == (0,) and info["n_clusters"] == 0 and info["method"] == METHOD_TRIVIAL
    labels, info = spectral_clusters(X[:1], k=10, method=method)
    assert labels.tolist() == [0] and info["method"] == METHOD_TRIVIAL
    labels, info = spectral_clusters(X[:4], k=10, method=method)  # n < k: one cluster per row
    assert sorted(labels.tolist()) == [0, 1, 2, 3] and info["n_clusters"] == 4
    labels, info = spectral_clusters(X[:10], k=10, method=method)  # n == k
    assert sorted(labels.tolist()) == list(range(10))
    labels, info = spectral_clusters(X, k=1, method=method)
    assert labels.tolist() == [0] * 12
    labels, info = spectral_clusters(X, k=10, method=method)  # n = k + 2: a real clustering
    assert info["method"] in (METHOD_EXACT, METHOD_LANDMARK) and info["n_clusters"] == 10
    assert sorted(set(labels.tolist())) == list(range(10))


def test_all_rows_nonfinite_and_bad_arguments():
    labels, info = spectral_clusters(np.full((3, 4), np.nan), k=2)
    assert labels.tolist() == [-1, -1, -1] and info["n_clusters"] == 0
    with pytest.raises(ValueError):
        spectral_clusters(np.zeros(5), k=2)
    with pytest.raises(ValueError):
        spectral_clusters(np.zeros((5, 2)), k=0)
    with pytest.raises(ValueError):
        spectral_clusters(np.zeros((5, 2)), k=2, method="kmeans")


def test_duplicate_rows_do_not_crash():
    X = np.repeat(np.eye(4, dtype=np.float32), 30, axis=0)  # 4 distinct points, 30 copies each
    for method in (METHOD_EXACT, METHOD_LANDMARK):
        labels, info = spectral_clusters(X, k=4, method=method)
        assert info["cluster_sizes"] == [30, 30, 30, 30], (method, info)

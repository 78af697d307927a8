import json

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from visit_assets.lib.selection.clustering import (
    AGREEMENT,
    EXACT_MAX,
    METHOD_ANN,
    METHOD_EXACT,
    METHOD_KMEANS,
    METHOD_LANDMARK,
    METHOD_TRIVIAL,
    spectral_clusters,
)
from visit_assets.lib.selection.landmark_spectral import default_landmarks


def test_landmark_agrees_with_exact_sklearn_on_a_mixture(mixture_3000):
    """Only on Gaussian mixtures, where every method agrees: on real text it does not, hence opt-in."""
    X, truth = mixture_3000
    exact, info_e = spectral_clusters(X, k=10, seed=0)  # 3,000 <= default threshold: exact
    approx, info_a = spectral_clusters(X, k=10, seed=0, method=METHOD_LANDMARK)
    assert info_e["method"] == METHOD_EXACT and info_a["method"] == METHOD_LANDMARK
    ari = adjusted_rand_score(exact, approx)
    print(f"\nARI landmark vs exact = {ari:.3f}; exact vs truth = {adjusted_rand_score(truth, exact):.3f}; "
          f"landmark vs truth = {adjusted_rand_score(truth, approx):.3f}")
    assert ari >= 0.9
    assert adjusted_rand_score(truth, exact) >= 0.9  # the mixture is a fair test: exact recovers it
    assert info_a["params"]["n_landmarks"] == default_landmarks(3000, 10) == 300
    ann, info_n = spectral_clusters(X, k=10, seed=0, method=METHOD_ANN)  # LOBPCG + AMG at this size
    assert adjusted_rand_score(exact, ann) >= 0.95 and info_n["params"]["eigen_iterations"] > 0
    assert info_n["params"]["graph_components"] == 1 and info_n["params"]["eigen_residual_max"] < 1e-4
    json.dumps(info_a), json.dumps(info_e), json.dumps(info_n)  # lineage-ready


def test_above_the_threshold_auto_uses_the_method_that_meets_the_bar(small_mixture):
    """The landmark method is below the agreement bar on real embeddings: auto never picks it."""
    X, truth = small_mixture
    n = len(X)
    _, at = spectral_clusters(X, k=3, exact_max=n)
    assert at["method"] == METHOD_EXACT and at["params"]["affinity"] == "nearest_neighbors"
    assert at["agreement_with_exact"] == AGREEMENT[METHOD_EXACT]
    labels, above = spectral_clusters(X, k=3, exact_max=n - 1)
    assert above["method"] == METHOD_ANN and above["agreement_with_exact"].startswith("meets the bar")
    assert above["params"]["n_neighbors"] == 10 and above["params"]["neighbour_recall"] >= 0.95
    assert adjusted_rand_score(truth, labels) > 0.95
    _, opted = spectral_clusters(X, k=3, exact_max=n - 1, method=METHOD_LANDMARK)  # by name only
    assert opted["method"] == METHOD_LANDMARK and opted["params"]["nearest_landmarks"] == 5
    assert opted["agreement_with_exact"].startswith("below the bar")
    assert EXACT_MAX == 10_000


def test_threshold_counts_only_finite_rows(small_mixture):
    X, _ = small_mixture
    X = X.copy()
    X[:5] = np.nan
    labels, info = spectral_clusters(X, k=3, exact_max=len(X) - 5)  # 5 rows are not clustered: still exact
    assert info["method"] == METHOD_EXACT and info["n_nonfinite"] == 5
    assert (labels[:5] == -1).all() and (labels[5:] >= 0).all()
    assert sum(info["cluster_sizes"]) == len(X) - 5


def test_kmeans_plus_plus_is_an_ablation_by_name_only(small_mixture):
    """The paper's named alternative (section 3.2): k-means++ on the embeddings, recorded as not spectral."""
    X, truth = small_mixture
    labels, info = spectral_clusters(X, k=3, seed=0, method=METHOD_KMEANS)
    assert info["method"] == METHOD_KMEANS and info["params"]["init"] == "k-means++"
    assert info["agreement_with_exact"].startswith("not spectral")
    assert adjusted_rand_score(truth, labels) > 0.95
    _, auto = spectral_clusters(X, k=3, exact_max=1)
    assert auto["method"] != METHOD_KMEANS


@pytest.mark.parametrize("method", [METHOD_EXACT, METHOD_ANN, METHOD_LANDMARK, METHOD_KMEANS])
def test_deterministic_and_canonical(small_mixture, method):
    X, truth = small_mixture
    a, ia = spectral_clusters(X, k=3, seed=7, method=method)
    b, _ = spectral_clusters(X, k=3, seed=7, method=method)
    assert np.array_equal(a, b)
    assert adjusted_rand_score(truth, a) > 0.95
    sizes = np.bincount(a)
    assert list(sizes) == ia["cluster_sizes"] and list(sizes) == sorted(sizes, reverse=True)


@pytest.mark.parametrize("method", ["auto", METHOD_EXACT, METHOD_ANN, METHOD_LANDMARK])
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
    assert info["method"] in (METHOD_EXACT, METHOD_ANN, METHOD_LANDMARK) and info["n_clusters"] == 10
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
    for method in (METHOD_EXACT, METHOD_ANN, METHOD_LANDMARK):
        labels, info = spectral_clusters(X, k=4, method=method)
        assert info["cluster_sizes"] == [30, 30, 30, 30], (method, info)
    _, info = spectral_clusters(X, k=4, method=METHOD_ANN)
    assert info["params"]["graph_components"] == 4 and info["params"]["neighbour_recall"] == 1.0  # ties count
    assert any("not fully connected" in w for w in info["warnings"])


@pytest.fixture(scope="module")
def stdlib_prose():
    """2,000 real sentences (standard-library docstrings) embedded with the packaged MiniLM: text
    clusters overlap, unlike Gaussian mixtures, which is where approximations part from exact."""
    from visit_assets.lib.models.embedder import SentenceEmbedder
    from visit_assets.lib.selection.prose_corpus import prose_sentences

    return np.asarray(SentenceEmbedder().encode(prose_sentences(with_site_packages=False)[:2000]), dtype=np.float32)


@pytest.mark.slow
def test_ann_method_agrees_with_exact_on_real_text(stdlib_prose):
    exact, _ = spectral_clusters(stdlib_prose, k=10, seed=0, method=METHOD_EXACT)
    ann, info = spectral_clusters(stdlib_prose, k=10, seed=0, method=METHOD_ANN)
    landmark, _ = spectral_clusters(stdlib_prose, k=10, seed=0, method=METHOD_LANDMARK)
    ari, ari_landmark = adjusted_rand_score(exact, ann), adjusted_rand_score(exact, landmark)
    print(f"\nreal text, 2,000 rows: ARI vs exact: ann {ari:.3f}, landmark {ari_landmark:.3f}")
    assert ari >= 0.9 and ari > ari_landmark
    assert info["params"]["neighbour_recall"] >= 0.95 and info["params"]["eigen_residual_max"] < 1e-4
    assert info["agreement_with_exact"] == AGREEMENT[METHOD_ANN]


def test_ann_neighbours_rerank_to_the_true_nearest_rows():
    """The projected index only proposes candidates; the kept neighbours are the true nearest by full
    L2, whatever the candidates' order, repeats or gaps (-1)."""
    from sklearn.neighbors import NearestNeighbors

    from visit_assets.lib.selection.ann_spectral import ann_neighbours, nearest_among

    rng = np.random.default_rng(0)
    # 256 dimensions, most variance in 24 of them (as embeddings have), projected on 64 components
    X = (rng.standard_normal((600, 24)) @ rng.standard_normal((24, 256)) + 0.3 * rng.standard_normal((600, 256)))
    X = X.astype(np.float32)
    _, truth = NearestNeighbors(n_neighbors=5).fit(X).kneighbors(X)
    candidates = np.concatenate([truth[:, ::-1], truth[:, :2], rng.integers(0, 600, (600, 6)), -np.ones((600, 2), int)],
                                axis=1)
    assert (nearest_among(X, rng.permuted(candidates, axis=1), 5) == truth).all()
    found = ann_neighbours(X, 5, seed=0, dims=64)
    assert (found[:, 0] == np.arange(600)).all()
    assert np.mean([len(set(a) & set(b)) for a, b in zip(found, truth, strict=True)]) / 5 >= 0.99


def test_a_projection_that_loses_neighbours_falls_back_to_all_dimensions():
    """Variance spread over every dimension (isotropic noise) defeats the principal-component index:
    its recall is measured, and below the floor the graph is built again over all dimensions."""
    from visit_assets.lib.selection.ann_spectral import GRAPH_DIMS, RECALL_FLOOR

    X = np.random.default_rng(1).standard_normal((3000, 320)).astype(np.float32)
    _, info = spectral_clusters(X, k=5, seed=0, method=METHOD_ANN)
    params = info["params"]
    assert params["projected_recall"] < RECALL_FLOOR  # the projection's graph, kept on the record
    assert params["graph_dims"] == 320 > GRAPH_DIMS and "all 320 dimensions" in params["neighbours"]
    assert params["neighbour_recall"] >= RECALL_FLOOR
    assert "neighbours_full_dims" in info["stage_seconds"]


def test_split_index_finds_the_true_neighbours_the_same_way_every_run(monkeypatch):
    """Above SPLIT_MIN_ROWS the rows go into two indices built side by side in threads: every row is
    searched in both (ids offset back to the whole), and the graph is the same on every run."""
    from sklearn.neighbors import NearestNeighbors

    from visit_assets.lib.selection import ann_spectral

    monkeypatch.setattr(ann_spectral, "SPLIT_MIN_ROWS", 500)
    rng = np.random.default_rng(2)
    X = (rng.standard_normal((1500, 16)) @ rng.standard_normal((16, 96))).astype(np.float32)
    assert ann_spectral.index_parts(len(X)) == 2
    first = ann_spectral.hnsw_candidates(X, 20, ann_spectral.search_breadth(len(X), full_dims=False))
    again = ann_spectral.hnsw_candidates(X, 20, ann_spectral.search_breadth(len(X), full_dims=False))
    assert first.shape == (1500, 40) and (first == again).all()
    assert (first[:, :20] < 750).all() and (first[:, 20:] >= 750).all()  # each half's own rows, offset back
    _, truth = NearestNeighbors(n_neighbors=10).fit(X).kneighbors(X)
    found = ann_spectral.nearest_among(X, first, 10)
    assert np.mean([len(set(a) & set(b)) for a, b in zip(found, truth, strict=True)]) / 10 >= 0.99

"""Spectral clustering of image embeddings (InstructionGPT-4 "diversity": K=10 clusters).

`spectral_clusters` picks the method from the number of rows:

* n <= exact_max: scikit-learn `SpectralClustering(affinity="nearest_neighbors")` — the method of
  the paper's public code. Its eigensolver (ARPACK shift-invert) factorises the graph Laplacian;
  the factor fills in on k-NN graphs of high-dimensional data, so the cost grows steeply (real
  text embeddings, 2 cores: seconds at 5,000 rows, ten minutes and 3 GB at 20,000: bench/spectral_agreement.py).
  The default threshold is 10,000 rows (the paper's dataset, 3,439 rows, is far below).
* n > exact_max: "spectral-ann" (ann_spectral.py), the same algorithm — the same nearest-neighbour
  affinity, normalised Laplacian and k-means — with the neighbours from an HNSW index over the
  rows' principal components, re-ranked in full dimension, and the eigenvectors from
  AMG-preconditioned LOBPCG. It meets the agreement bar (ARI >= 0.9 against the
  exact method on real text embeddings, 3k-20k rows; docs/benchmarks.md, "Clustering agreement on
  real text"), and records its neighbour recall, graph components and eigen-residual, so a poor
  neighbour graph or an unconverged eigensolver shows in the run's metadata.
* method "spectral-landmark" (opt-in only): landmark spectral clustering (landmark_spectral.py),
  linear in n, but below the bar on real text embeddings, where clusters overlap.
* method "kmeans++" (opt-in only): k-means with k-means++ seeding on the embeddings themselves, the
  alternative the paper names beside spectral clustering (section 3.2), for its ablation.

Labels are canonical: cluster 0 is the largest, ties broken by the smallest row index, so equal
partitions always get equal labels. Rows with a non-finite value (an image that could not be
embedded) get label -1 and are left out of the clustering; `info` counts them. Deterministic for a
seed (given the same thread count; BLAS reductions may differ in the last bit across machines).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Literal, get_args

import numpy as np

from visit_assets.lib.selection.ann_spectral import ann_spectral_embedding
from visit_assets.lib.selection.landmark_spectral import (
    NEAREST_LANDMARKS,
    landmark_spectral_embedding,
)

EXACT_MAX = 10_000  # rows; "auto" clusters exactly up to here, with spectral-ann above (module docstring)
N_NEIGHBORS = 10  # scikit-learn's default for affinity="nearest_neighbors"
ASSIGN_N_INIT = 10  # k-means restarts: SpectralClustering's default, kept for the exact reference
# k-means restarts on an approximate method's embedding. With 10, on 50,000 real sentences, seed 0
# stopped in a local optimum 4% worse in inertia than seeds 1-2 (ARI 0.89 vs the exact graph's
# clustering, which found the better one); 30 found it for every seed (0.98-0.99). The same objective,
# minimised better; a few seconds at 1M rows.
EMBEDDING_N_INIT = 30

METHOD_EXACT = "spectral-exact"
METHOD_LANDMARK = "spectral-landmark"
METHOD_ANN = "spectral-ann"
METHOD_KMEANS = "kmeans++"
METHOD_TRIVIAL = "trivial"  # 0 rows, 1 row, or no more rows than clusters
# The methods a caller may ask for (ImageClusterConfig.method: the run config offers these and refuses others).
ClusterMethod = Literal["auto", "spectral-exact", "spectral-ann", "spectral-landmark", "kmeans++"]
METHODS: tuple[str, ...] = get_args(ClusterMethod)
# What is measured of each method's agreement with the exact one; every result names it.
AGREEMENT = {
    METHOD_EXACT: "reference: scikit-learn SpectralClustering, as the paper's code",
    METHOD_TRIVIAL: "exact: nothing to approximate",
    METHOD_ANN: "meets the bar (ARI >= 0.9 vs exact on real text embeddings): 0.99 or more at 3k-20k rows; at 50k, "
                "where exact does not run here, 0.99 or more vs its own algorithm on the exact k-NN graph: "
                "docs/benchmarks.md 'Clustering agreement on real text'",
    METHOD_LANDMARK: "below the bar (ARI >= 0.9 vs exact on real text embeddings): an explicit opt-in, "
                     "docs/benchmarks.md 'Clustering agreement on real text'",
    METHOD_KMEANS: "not spectral clustering: the paper's named alternative, an explicit opt-in for its ablation",
}


def spectral_clusters(
    X: Any,
    k: int = 10,
    seed: int = 0,
    exact_max: int = EXACT_MAX,
    *,
    method: str = "auto",
    n_neighbors: int = N_NEIGHBORS,
    n_landmarks: int | None = None,
    nearest_landmarks: int = NEAREST_LANDMARKS,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Cluster the rows of X (n x d) into at most k groups.

    Returns (labels, info): labels int64 of length n (-1 for rows with NaN/inf), info a
    JSON-serialisable record of the method, its parameters, cluster sizes, warnings and timings.
    `method` forces "spectral-exact", "spectral-ann" or "spectral-landmark" (default "auto": exact
    when the number of clusterable rows is <= exact_max, else spectral-ann).
    """
    import sklearn

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = int(k)
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows x dims), got shape {X.shape}")
    if X.dtype != np.float32 and X.dtype != np.float64:
        X = X.astype(np.float32)
    n_all = X.shape[0]
    finite = np.ones(n_all, dtype=bool)
    for lo in range(0, n_all, 1 << 16):  # blockwise: no n x d boolean temporary at 10^6 rows
        finite[lo:lo + (1 << 16)] = np.isfinite(X[lo:lo + (1 << 16)]).all(axis=1)
    n = int(finite.sum())
    if n < n_all:
        X = X[finite]
    labels_all = np.full(n_all, -1, dtype=np.int64)
    info: dict[str, Any] = {
        "n_rows": n_all,
        "n_clustered": n,
        "n_nonfinite": n_all - n,
        "k_requested": k,
        "seed": int(seed),
        "exact_max": int(exact_max),
        "scikit_learn": sklearn.__version__,
        "warnings": [],
    }
    t0 = time.perf_counter()
    k_eff = min(k, n)
    if n <= 1 or k_eff == n or k_eff == 1:
        # 0 rows: nothing; 1 row or n <= k: every row its own cluster; k == 1: one cluster.
        labels = np.zeros(n, dtype=np.int64) if k_eff <= 1 else np.arange(n, dtype=np.int64)
        info.update(method=METHOD_TRIVIAL, params={},
                    reason="k == 1" if k_eff == 1 and n > 1 else f"n={n} <= k={k}: one cluster per row")
    else:
        chosen = method if method != "auto" else (METHOD_EXACT if n <= exact_max else METHOD_ANN)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if chosen == METHOD_EXACT:
                labels, params = _exact(X, k_eff, seed, n_neighbors)
            elif chosen == METHOD_KMEANS:
                labels, params = _kmeans(X, k_eff, seed)
            else:
                timings: dict[str, float] = {}
                if chosen == METHOD_ANN:
                    maps, params = ann_spectral_embedding(X, k_eff, seed, n_neighbors, timings)
                else:
                    maps, params = landmark_spectral_embedding(X, k_eff, seed, n_landmarks, nearest_landmarks, timings)
                labels = _assign(maps, k_eff, seed, params, timings)
                info["stage_seconds"] = {name: round(s, 3) for name, s in timings.items()}
        info["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        info.update(method=chosen, params=params)
    labels = _canonical(labels)
    labels_all[finite] = labels
    sizes = np.bincount(labels, minlength=0) if n else np.zeros(0, dtype=np.int64)
    info["agreement_with_exact"] = AGREEMENT[info["method"]]
    info["n_clusters"] = int(len(sizes))
    info["cluster_sizes"] = [int(s) for s in sizes]
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return labels_all, info


def _exact(X: np.ndarray, k: int, seed: int, n_neighbors: int) -> tuple[np.ndarray, dict[str, Any]]:
    from sklearn.cluster import SpectralClustering

    nn = max(1, min(int(n_neighbors), X.shape[0] - 1))
    params = {
        "estimator": "sklearn.cluster.SpectralClustering",
        "n_clusters": k,
        "affinity": "nearest_neighbors",
        "n_neighbors": nn,
        "assign_labels": "kmeans",
        "n_init": ASSIGN_N_INIT,
        "eigen_solver": "arpack",
        "random_state": int(seed),
    }
    est = SpectralClustering(n_clusters=k, affinity="nearest_neighbors", n_neighbors=nn,
                             assign_labels="kmeans", n_init=ASSIGN_N_INIT, eigen_solver="arpack",
                             random_state=int(seed))
    return np.asarray(est.fit_predict(X), dtype=np.int64), params


def _kmeans(X: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    from sklearn.cluster import KMeans

    params = {"estimator": "sklearn.cluster.KMeans", "n_clusters": k, "init": "k-means++",
              "n_init": ASSIGN_N_INIT, "random_state": int(seed)}
    est = KMeans(n_clusters=k, init="k-means++", n_init=ASSIGN_N_INIT, random_state=int(seed))
    return np.asarray(est.fit_predict(X), dtype=np.int64), params


def _assign(maps: np.ndarray, k: int, seed: int, params: dict[str, Any], timings: dict[str, float]) -> np.ndarray:
    """k-means on a spectral embedding, as SpectralClustering's assign_labels="kmeans"."""
    from sklearn.cluster import KMeans

    t = time.perf_counter()
    labels = KMeans(n_clusters=k, n_init=EMBEDDING_N_INIT, random_state=seed).fit_predict(maps)
    timings["assign"] = time.perf_counter() - t
    params.update(assign_labels="sklearn.cluster.KMeans", n_init=EMBEDDING_N_INIT, random_state=int(seed))
    return np.asarray(labels, dtype=np.int64)


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel so cluster 0 is the largest; equal sizes ordered by their first row."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return labels
    uniq, first, inverse, counts = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))  # size desc, then first occurrence asc
    new = np.empty(len(uniq), dtype=np.int64)
    new[order] = np.arange(len(uniq))
    return new[inverse]

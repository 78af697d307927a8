"""Spectral clustering at scale: the exact method's algorithm with two steps swapped for libraries.

scikit-learn's `SpectralClustering(affinity="nearest_neighbors")` is, in order: a k-NN connectivity
graph (brute force, each row its own first neighbour), symmetrised as (A + A^T) / 2; the K
eigenvectors of the normalised Laplacian with the smallest eigenvalues (ARPACK in shift-invert
mode, which factorises the Laplacian: the factor fills in and the cost grows steeply,
bench/spectral_agreement.py); k-means on them. Here the same graph, Laplacian and label assignment,
with the two steps that do not scale done by maintained libraries:

1. neighbours: candidates from an HNSW index (faiss-cpu `IndexHNSWFlat`) over the rows projected
   on their top principal components, re-ranked by the full-dimension L2 distance (scikit-learn's
   Euclidean), then one pass over each row's neighbours' neighbours. The projection makes the
   index 2-3x cheaper to build and search; the re-ranking puts back what it blurs. Recall against
   brute force is measured on a seeded sample of rows and recorded; below RECALL_FLOOR the graph
   is built again over all dimensions. Each index is built by one thread (parallel insertion
   order varies from run to run, and with it the graph); above SPLIT_MIN_ROWS the rows are split
   in two halves, each half's index built in its own thread, and every row searched in both.
2. eigenvectors: LOBPCG preconditioned with algebraic multigrid (pyamg smoothed aggregation), the
   recipe of scikit-learn's `eigen_solver="amg"`, but iterated to a residual tolerance: scikit-learn
   leaves LOBPCG at SciPy's default of 20 iterations, which stops short on real embeddings (the
   residual is recorded, so an unconverged embedding shows).

Then scikit-learn `KMeans` on the embedding (clustering.py), as SpectralClustering's `assign_labels="kmeans"`.
Agreement with the exact method on real text embeddings: bench/spectral_agreement.py.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

# HNSW links per node and search breadths. The K smallest Laplacian eigenvalues of real embeddings
# lie close together (on 20k sentences the 10th and 11th differ by 1%), so a few missed neighbours
# can swap an eigenvector: with M=16/efConstruction=100 (recall 0.998-0.9999 on 1,000 sampled rows)
# the clustering agreed with exact at ARI 0.86-0.88 only, with these at 0.99. Each run records its recall.
# efConstruction matters most (100 with efSearch 128: recall 0.9988, ARI 0.86 on 20k real sentences);
# efSearch 64 instead of 128 kept recall 0.9999 and ARI 0.99 there and halves the search.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 64
# Two half-indices: the build, 70-75% of the time at 1M rows, runs on two cores and each half is
# cheaper (at 200k real-like rows 105 s -> 44 s), while each row is searched twice. A row is found
# less surely in a half it was not inserted in (efSearch 64: recall 1.0 -> 0.9995 at 200k), so the
# halves search wider. On 20k real sentences against the exact k-NN graph: efSearch 96 left 40 of
# 200,000 graph entries wrong and the clustering flipped (ARI vs exact 0.87); 128 left 16 and
# agreed (0.998-0.999), as did the single index at 64 with 84 wrong: agreement hangs on which few
# edges are missed, so it is measured (bench/spectral_agreement.py), never inferred from recall.
# The part count is fixed, not the machine's cores: the graph must not depend on the machine.
SPLIT_PARTS = 2
SPLIT_MIN_ROWS = 10_000
HNSW_EF_SEARCH_SPLIT = 128
# The search breadth where the index sees every dimension: in a rebuild (data the projection failed
# on is hard for the index too: 320-d isotropic noise, recall 0.994 with 64), and where nothing was
# projected (small inputs, or at most GRAPH_DIMS dimensions), as no rebuild can follow there.
HNSW_EF_SEARCH_FULL_DIMS = 256
# Principal components the index sees, and candidates per row it returns for re-ranking. On 20,000
# real sentence embeddings (MiniLM, 384-d) 192 components kept the re-ranked graph's recall at
# 0.9999 and the agreement with exact at ARI 0.999; 128 lost recall (0.995) and agreement (0.77).
GRAPH_DIMS = 192
CANDIDATES = 40  # at least; 4 x the neighbour count when that is larger
PCA_SAMPLE = 50_000  # rows the projection is fitted on (seeded)
# Below this recall on the sampled rows the projection lost too much (data whose variance is spread
# over many dimensions, e.g. isotropic noise: 0.72 on 512-d Gaussian blobs), and the graph is built
# again over all dimensions; the first recall is recorded too.
RECALL_FLOOR = 0.999
PROJECTION_MIN_ROWS = 2_000  # fewer rows: the index is cheap on every dimension (and a PCA needs rows)
RERANK_CHUNK = 50_000  # rows re-ranked at a time: memory stays O(chunk x candidates)
RECALL_SAMPLE = 1000  # rows whose neighbours are checked against brute force
LOBPCG_TOL = 1e-6
LOBPCG_MAXITER = 300
AMG_SHIFT = 1e-5  # scikit-learn's: the Laplacian is singular, its preconditioner must not be


def ann_spectral_embedding(X: np.ndarray, k: int, seed: int, n_neighbors: int,
                           timings: dict[str, float]) -> tuple[np.ndarray, dict[str, Any]]:
    """The spectral embedding (n x k) to assign labels on, and the parameters and measurements to record."""
    t = time.perf_counter()
    nn = max(1, min(int(n_neighbors), X.shape[0] - 1))
    dims = projected = graph_dims(*X.shape)
    ef = search_breadth(X.shape[0], full_dims=dims == X.shape[1])
    ids = ann_neighbours(X, nn, seed, dims, ef)
    timings["neighbours"] = time.perf_counter() - t
    t = time.perf_counter()
    recall = first_recall = neighbour_recall(X, ids, seed)
    timings["recall_check"] = time.perf_counter() - t
    if recall < RECALL_FLOOR and dims < X.shape[1]:  # the projection blurred the neighbours: all dimensions
        t = time.perf_counter()
        dims, ef = X.shape[1], search_breadth(X.shape[0], full_dims=True)
        ids = ann_neighbours(X, nn, seed, dims, ef)
        recall = neighbour_recall(X, ids, seed)
        timings["neighbours_full_dims"] = time.perf_counter() - t
    if recall < RECALL_FLOOR:
        warnings.warn(f"neighbour recall {recall} is under {RECALL_FLOOR}: the clusters may differ from exact", UserWarning,
                      stacklevel=2)
    count = min(candidate_count(nn), X.shape[0])
    t = time.perf_counter()
    affinity = connectivity_affinity(ids)
    components = graph_components(affinity)
    maps, residual, iterations = amg_embedding(affinity, k, seed)
    timings["embedding"] = time.perf_counter() - t
    params = {
        "algorithm": "spectral clustering, nearest-neighbour affinity (as sklearn SpectralClustering) "
                     "on an approximate k-NN graph, AMG-preconditioned LOBPCG eigensolver",
        "n_clusters": k,
        "n_neighbors": nn,
        "neighbours": f"faiss IndexHNSWFlat (M={HNSW_M}, efConstruction={HNSW_EF_CONSTRUCTION}, "
                      f"efSearch={max(ef, count)}, L2, built single-threaded"
                      + (f", {index_parts(X.shape[0])} indices over consecutive row ranges, each row searched in all"
                         if index_parts(X.shape[0]) > 1 else "") + ") over "
                      + (f"the top {dims} principal components (fitted on up to {PCA_SAMPLE:,} seeded rows)"
                         if dims < X.shape[1] else f"all {dims} dimensions")
                      + f", {count} candidates per row re-ranked by full L2, then one "
                      "neighbours-of-neighbours pass",
        "graph_dims": dims,
        "neighbour_recall": recall,
        "projected_recall": first_recall if projected < X.shape[1] else None,  # of the graph over the components
        "graph_components": components,
        "eigen_solver": f"scipy lobpcg + pyamg smoothed_aggregation_solver (tol={LOBPCG_TOL}, "
                        f"maxiter={LOBPCG_MAXITER})",
        "eigen_residual_max": residual,
        "eigen_iterations": iterations,
    }
    return maps, params


def index_parts(n: int) -> int:
    return SPLIT_PARTS if n >= SPLIT_MIN_ROWS else 1


def search_breadth(n: int, full_dims: bool) -> int:
    """efSearch: wider where every dimension is indexed (no rebuild can follow) or the index is split."""
    if full_dims:
        return HNSW_EF_SEARCH_FULL_DIMS
    return HNSW_EF_SEARCH_SPLIT if index_parts(n) > 1 else HNSW_EF_SEARCH


def candidate_count(nn: int) -> int:
    return max(CANDIDATES, 4 * nn)


def graph_dims(n: int, d: int) -> int:
    """The dimensions the index sees: GRAPH_DIMS principal components, or all d for small inputs."""
    return d if n < PROJECTION_MIN_ROWS else min(GRAPH_DIMS, d)


def ann_neighbours(X: np.ndarray, nn: int, seed: int, dims: int | None = None,
                   ef_search: int = HNSW_EF_SEARCH) -> np.ndarray:
    """Each row's nn nearest rows (itself first), n x nn int64: HNSW candidates in the projected space,
    re-ranked in the full space, then refined with the neighbours of those neighbours."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    projected = principal_components(X, dims or graph_dims(*X.shape), seed)
    candidates = hnsw_candidates(projected, min(candidate_count(nn), X.shape[0]), ef_search)
    del projected
    ids = nearest_among(X, candidates, nn)
    del candidates
    ids = nearest_among(X, neighbours_of_neighbours(ids), nn)
    return with_self(ids)


def principal_components(X: np.ndarray, dims: int, seed: int) -> np.ndarray:
    """X projected on its top `dims` principal components (X itself when it has no more dimensions)."""
    import faiss

    if X.shape[1] <= dims:
        return X
    sample = np.sort(np.random.default_rng(seed).choice(X.shape[0], size=min(X.shape[0], PCA_SAMPLE), replace=False))
    pca = faiss.PCAMatrix(X.shape[1], dims)
    pca.train(np.ascontiguousarray(X[sample]))
    out = np.empty((X.shape[0], dims), dtype=np.float32)
    for lo in range(0, X.shape[0], RERANK_CHUNK):
        out[lo:lo + RERANK_CHUNK] = pca.apply(X[lo:lo + RERANK_CHUNK])
    return out


def hnsw_candidates(Y: np.ndarray, count: int, ef_search: int = HNSW_EF_SEARCH) -> np.ndarray:
    """Each row's `count` nearest rows in each of the index parts (-1 where a part found fewer),
    n x (parts * count) int64."""

    bounds = np.linspace(0, Y.shape[0], index_parts(Y.shape[0]) + 1).astype(np.int64)
    indices = built_in_threads([Y[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)])
    found = []
    for lo, index in zip(bounds[:-1], indices, strict=True):
        index.hnsw.efSearch = max(ef_search, count)
        _, ids = index.search(Y, min(count, index.ntotal))  # each query on its own: threads do not change it
        found.append(np.where(ids >= 0, ids + lo, -1))
    return np.concatenate(found, axis=1)


def built_in_threads(parts: list[np.ndarray]):
    """One HNSW index per part, each built by a single thread (one insertion order, one graph), the
    parts side by side (faiss releases the GIL while it adds)."""
    from concurrent.futures import ThreadPoolExecutor

    import faiss

    def build(part: np.ndarray):
        index = faiss.IndexHNSWFlat(part.shape[1], HNSW_M)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # per calling thread: OpenMP keeps this setting per thread
        try:
            index.add(np.ascontiguousarray(part))
        finally:
            faiss.omp_set_num_threads(threads)
        return index

    if len(parts) == 1:
        return [build(parts[0])]
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        return list(pool.map(build, parts))


def neighbours_of_neighbours(ids: np.ndarray) -> np.ndarray:
    """Each row's neighbours and their neighbours (n x (k + k*k)): where a missed neighbour usually is."""
    n, k = ids.shape
    out = np.empty((n, k + k * k), dtype=np.int64)
    for lo in range(0, n, RERANK_CHUNK):
        block = ids[lo:lo + RERANK_CHUNK]
        out[lo:lo + len(block)] = np.concatenate([block, ids[block].reshape(len(block), -1)], axis=1)
    return out


def nearest_among(X: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Each row's k nearest among its candidate ids by full L2 (repeats and -1 ignored; equal
    distances ordered by id, so the result does not depend on the candidates' order)."""
    import faiss

    n, c = candidates.shape
    out = np.empty((n, k), dtype=np.int64)
    for lo in range(0, n, RERANK_CHUNK):
        block = np.sort(candidates[lo:lo + RERANK_CHUNK], axis=1)
        rows = np.repeat(np.arange(lo, lo + len(block), dtype=np.int64), c)
        cols = np.ascontiguousarray(np.maximum(block, 0).ravel())
        dist: np.ndarray = np.empty(rows.size, dtype=np.float32)
        faiss.pairwise_indexed_L2sqr(X.shape[1], rows.size, faiss.swig_ptr(X), faiss.swig_ptr(rows),  # type: ignore[attr-defined]  # in faiss, not in its .pyi
                                     faiss.swig_ptr(X), faiss.swig_ptr(cols), faiss.swig_ptr(dist))
        dist = dist.reshape(len(block), c)
        repeat = np.zeros_like(block, dtype=bool)
        repeat[:, 1:] = block[:, 1:] == block[:, :-1]
        dist[repeat | (block < 0)] = np.inf
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        found = np.take_along_axis(block, order, axis=1)
        found[np.take_along_axis(dist, order, axis=1) == np.inf] = -1  # fewer than k distinct candidates
        out[lo:lo + len(block)] = found
    return out


def with_self(ids: np.ndarray) -> np.ndarray:
    """Each row among its own neighbours (scikit-learn's k-NN graph includes the point itself)."""
    rows = np.arange(ids.shape[0])
    missing_self = ~(ids == rows[:, None]).any(axis=1)  # duplicates may rank a twin first
    ids[missing_self, -1] = rows[missing_self]
    ids[ids < 0] = np.repeat(rows[:, None], ids.shape[1], axis=1)[ids < 0]  # fewer hits than nn: self-links
    return ids


def neighbour_recall(X: np.ndarray, ids: np.ndarray, seed: int) -> float:
    """Share of the nn neighbours found that are among the true nn nearest (brute force, by distance,
    so an equally near duplicate counts as found), over a seeded sample of rows."""
    from sklearn.neighbors import NearestNeighbors

    n, nn = ids.shape
    sample = np.sort(np.random.default_rng(seed).choice(n, size=min(n, RECALL_SAMPLE), replace=False))
    true_dist, _ = NearestNeighbors(n_neighbors=nn, algorithm="brute").fit(X).kneighbors(X[sample])
    found = np.linalg.norm(X[ids[sample]] - X[sample][:, None, :], axis=2)
    hits = found <= true_dist[:, -1:] * (1 + 1e-5) + 1e-6  # within the true nn-th distance
    return round(float(hits.mean()), 4)


def graph_components(affinity) -> int:
    """Connected components of the neighbour graph; more than one is warned about, as scikit-learn does
    (spectral clustering then splits along components first)."""
    from scipy.sparse.csgraph import connected_components

    count = int(connected_components(affinity, directed=False, return_labels=False))
    if count > 1:
        warnings.warn(f"the nearest-neighbour graph is not fully connected ({count} components)", UserWarning,
                      stacklevel=2)
    return count


def connectivity_affinity(ids: np.ndarray):
    """scikit-learn's nearest-neighbour affinity: 0/1 k-NN connectivity, symmetrised (A + A^T) / 2."""
    import scipy.sparse as sp

    n, nn = ids.shape
    A = sp.csr_matrix((np.ones(n * nn), ids.ravel(), np.arange(0, n * nn + 1, nn)), shape=(n, n))
    A.sum_duplicates()
    A.data[:] = 1.0  # a self-link filled in for a missing hit counts once
    return ((A + A.T) * 0.5).tocsr()


def amg_embedding(affinity, k: int, seed: int) -> tuple[np.ndarray, float, int]:
    """The k smallest eigenvectors of the normalised Laplacian, divided by sqrt(degree) (as
    scikit-learn's spectral_embedding), with the largest residual and the iterations taken."""
    import scipy.sparse as sp
    from pyamg import smoothed_aggregation_solver
    from scipy.sparse.csgraph import laplacian
    from scipy.sparse.linalg import lobpcg

    n = affinity.shape[0]
    lap, dd = laplacian(affinity, normed=True, return_diag=True)
    lap = sp.csr_matrix(lap)
    lap.setdiag(1.0)  # scikit-learn's _set_diag: self-links do not change the normalised diagonal
    if n < 5 * (k + 1):  # too few rows for a block method (scikit-learn's own cut-off): dense
        values, vectors = np.linalg.eigh(lap.toarray())
        return vectors[:, :k] / dd[:, None], 0.0, 0
    preconditioner = smoothed_aggregation_solver(lap + AMG_SHIFT * sp.identity(n, format="csr")).aspreconditioner()
    start = np.random.default_rng(seed).standard_normal((n, k + 1))
    start[:, 0] = dd  # the known first eigenvector (eigenvalue 0) speeds convergence
    values, vectors, history = lobpcg(lap, start, M=preconditioner, tol=LOBPCG_TOL, maxiter=LOBPCG_MAXITER,
                                      largest=False, retResidualNormsHistory=True)
    order = np.argsort(values)[:k]
    values, vectors = values[order], vectors[:, order]
    residual = float(np.max(np.linalg.norm(lap @ vectors - vectors * values, axis=0)))
    return vectors / dd[:, None], round(residual, 8), len(history)

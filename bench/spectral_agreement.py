"""Agreement of image-clustering methods with exact spectral clustering, on real text embeddings.

    .venv/bin/python bench/spectral_agreement.py [--sizes 3000 5000 20000] [--graph-sizes 50000] [--write-docs]

Gaussian mixtures are easy: every method recovers them (bench/spectral_scale.py). This measures on
real prose instead: the sentences of the docstrings of the Python packages installed in this
environment and of the standard library (written by people, not generated from templates; 8-40
words, mostly words), shuffled with a fixed seed, embedded with the packaged all-MiniLM-L6-v2 (the
product's own embedder). Only counts and a hash of the corpus are recorded, never its text.

For each size and each method of `spectral_clusters` (the exact reference, scikit-learn
SpectralClustering, and every approximation), seeds 0, 1, 2, in a fresh process whose peak RSS is
read with os.wait4. Reported: time, peak RSS, the adjusted Rand index against exact for the same
seed, and each method's agreement with itself across seeds (exact's is the noise floor). Each
process's output is kept in bench/out, keyed by the data and (for approximations) the clustering
code, so a changed approximation never re-runs the slow reference. The bar a method must meet to
be used by default above the exact threshold: ARI >= 0.9 against exact at every size.

Where scikit-learn's exact method is too slow to run here (`--graph-sizes`, default 50,000 rows),
`spectral-ann` is compared with "exact-graph": its own algorithm on the exact (brute-force) k-NN
graph, which measures what the approximate neighbours alone change.

Raw results: bench/results/spectral_agreement-<date>.json with the machine's facts; --write-docs
renders the section of docs/benchmarks.md between its markers from that file.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import itertools
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from visit_assets.lib.selection.prose_corpus import prose_sentences

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "spectral_agreement"
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- spectral_agreement:begin -->", "<!-- spectral_agreement:end -->"
SEEDS = (0, 1, 2)
K = 10
BAR = 0.9
GRAPH_REFERENCE = "exact-graph"  # the bench's own reference above the sizes where exact runs (exact_graph_clusters)
EMBEDDED_ROWS = 50_000  # the first 50,000 sentences are embedded once; every size is a prefix of them


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    return {"cpu": model.group(1) if model else platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version()}


def embeddings(n_max: int) -> tuple[np.ndarray, dict]:
    """The first n_max sentences embedded (cached in bench/out by the corpus hash)."""
    from visit_assets.lib.models.embedder import SentenceEmbedder

    sentences = prose_sentences()
    if len(sentences) < n_max:
        raise SystemExit(f"the corpus has {len(sentences)} sentences, fewer than {n_max}")
    digest = hashlib.sha256("\n".join(sentences).encode()).hexdigest()
    facts = {"sentences": len(sentences), "sha256": digest}
    cache = OUT / f"{digest[:16]}_{n_max}.npy"
    if not cache.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        embedder = SentenceEmbedder()
        t = time.perf_counter()
        X = embedder.encode(sentences[:n_max])
        facts["embed_s"] = round(time.perf_counter() - t, 1)
        np.save(cache, np.asarray(X, dtype=np.float32))
        facts["embedder"] = embedder.identity.label()
    return np.load(cache), {**facts, "cache": str(cache.relative_to(REPO)), "file_mb": round(cache.stat().st_size / 2**20)}


def compared_methods() -> list[str]:
    from visit_assets.lib.selection import clustering

    return [m for m in clustering.METHODS if m != "auto"]


def child(path: str, n: int, method: str) -> None:
    """Cluster the first n rows with one method and each seed; print labels and timings as JSON."""
    from visit_assets.lib.selection.clustering import spectral_clusters

    warnings.simplefilter("ignore")
    X = np.load(path)[:n]
    out: dict = {}
    for seed in SEEDS:
        t = time.perf_counter()
        if method == GRAPH_REFERENCE:
            labels, info = exact_graph_clusters(X, seed)
        else:
            labels, info = spectral_clusters(X, k=K, seed=seed, method=method, exact_max=n)
        out[str(seed)] = {"seconds": round(time.perf_counter() - t, 2), "labels": labels.tolist(),
                          "sizes": info["cluster_sizes"], "params": _plain(info["params"])}
    print(json.dumps(out))


def exact_graph_clusters(X: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """spectral-ann's algorithm on the exact k-NN graph (brute-force neighbours, self included, as
    scikit-learn's): the reference where scikit-learn's own eigensolver is too slow to run. Against
    it, only what the approximate neighbours change is measured."""
    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    from visit_assets.lib.selection.ann_spectral import amg_embedding, connectivity_affinity
    from visit_assets.lib.selection.clustering import EMBEDDING_N_INIT, N_NEIGHBORS

    ids = NearestNeighbors(n_neighbors=N_NEIGHBORS, algorithm="brute").fit(X).kneighbors(X, return_distance=False)
    maps, residual, _ = amg_embedding(connectivity_affinity(ids), K, seed)
    labels = KMeans(n_clusters=K, n_init=EMBEDDING_N_INIT, random_state=seed).fit_predict(maps)
    sizes = np.bincount(labels, minlength=K)
    return labels, {"cluster_sizes": sorted(map(int, sizes), reverse=True),
                    "params": {"neighbours": "brute force (exact)", "eigen_residual_max": residual}}


def _plain(params: dict) -> dict:
    return {k: v for k, v in params.items() if not isinstance(v, list)}


def run(path: Path, n: int, method: str, code: str) -> dict:
    """One fresh process per (size, method), its output kept in bench/out keyed by the data and the code.

    The exact method's key holds only scikit-learn's version, so adding or changing an approximation
    never re-runs the slow reference."""
    import sklearn

    key = sklearn.__version__ if method == "spectral-exact" else code
    cache = OUT / f"{path.stem}_{n}_{method}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    proc = subprocess.Popen([sys.executable, __file__, "child", str(path), str(n), method], stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    raw = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child n={n} method={method} failed")
    runs = {"peak_rss_mb": round(usage.ru_maxrss / 1024), "seeds": json.loads(raw)}
    cache.write_text(json.dumps(runs))
    return runs


def measure(path: Path, n: int, methods: list[str], reference: str = "spectral-exact") -> dict:
    from sklearn.metrics import adjusted_rand_score as ari

    code = "".join((REPO / "visit_assets" / "lib" / "selection" / f"{name}.py").read_text()
                   for name in ("clustering", "ann_spectral", "landmark_spectral"))
    code += Path(__file__).read_text() if reference == GRAPH_REFERENCE else ""
    runs = {m: run(path, n, m, code) for m in methods}
    labels = {m: {s: runs[m]["seeds"][str(s)]["labels"] for s in SEEDS} for m in methods}
    exact = labels[reference]
    pairs = list(itertools.combinations(SEEDS, 2))
    row: dict = {"n": n}
    for m in methods:
        row[m] = {
            "peak_rss_mb": runs[m]["peak_rss_mb"],
            "seconds": [runs[m]["seeds"][str(s)]["seconds"] for s in SEEDS],
            "sizes": runs[m]["seeds"]["0"]["sizes"],
            "params": runs[m]["seeds"]["0"]["params"],
            "vs_exact_ari": [round(ari(exact[s], labels[m][s]), 3) for s in SEEDS],
            "vs_itself_ari": [round(ari(labels[m][a], labels[m][b]), 3) for a, b in pairs],
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 5000, 20000])
    parser.add_argument("--graph-sizes", type=int, nargs="*", default=[50000],
                        help="sizes where spectral-ann is compared with its algorithm on the exact k-NN graph")
    parser.add_argument("--conditions", default="", help="what else ran on the machine (shown beside the timings)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if max(args.sizes + args.graph_sizes) > EMBEDDED_ROWS:
        raise SystemExit(f"sizes go up to {EMBEDDED_ROWS:,} rows")
    X, facts = embeddings(EMBEDDED_ROWS)  # always the same file, so cached runs of other sizes stay valid
    path = REPO / facts["cache"]
    methods = compared_methods()
    rows = []
    for n in sorted(args.sizes):
        rows.append(measure(path, n, methods))
        print(json.dumps(rows[-1]), flush=True)
    graph_rows = []
    for n in sorted(args.graph_sizes):
        graph_rows.append(measure(path, n, [GRAPH_REFERENCE, "spectral-ann"], reference=GRAPH_REFERENCE))
        print(json.dumps(graph_rows[-1]), flush=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    import sklearn

    result = {"date": datetime.date.today().isoformat(), "commit": commit, "machine": machine(),
              "scikit_learn": sklearn.__version__, "corpus": facts, "k": K, "seeds": list(SEEDS), "bar": BAR,
              "methods": methods, "sizes": rows, "conditions": args.conditions, "graph_reference": GRAPH_REFERENCE,
              "graph_check": graph_rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"spectral_agreement-{result['date']}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    if args.write_docs:
        text = DOCS.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        DOCS.write_text(text[:start] + "\n" + render(result, out.relative_to(REPO)) + "\n" + text[end:])


def render(result: dict, path: Path) -> str:
    def span(values: list[float]) -> str:
        return f"{min(values):.2f}-{max(values):.2f}" if min(values) != max(values) else f"{values[0]:.2f}"

    lines = [
        f"`.venv/bin/python bench/spectral_agreement.py --write-docs` — {result['corpus']['sentences']:,} distinct "
        f"sentences of real prose (the docstrings of the installed packages and the standard library, fixed shuffle; "
        f"corpus sha256 {result['corpus']['sha256'][:12]}), embedded with the packaged all-MiniLM-L6-v2, K = "
        f"{result['k']}, seeds {', '.join(map(str, result['seeds']))}, each size and method in a fresh process (its "
        f"peak RSS includes loading the whole embedding file, {result['corpus'].get('file_mb', '?')} MB). Raw "
        f"results: `{path}` ({result['date']}, commit {result['commit']}, {result['machine']['cores']} cores, "
        f"scikit-learn {result['scikit_learn']})."
        + (f" Timings: {result['conditions']}" if result.get("conditions") else ""),
        "",
        "| rows | method | median s | peak RSS MB | ARI vs exact, per seed | ARI vs itself across seeds |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["sizes"]:
        for m in result["methods"]:
            c = r[m]
            vs_exact = "reference" if m == "spectral-exact" else span(c["vs_exact_ari"])
            lines.append(f"| {r['n']:,} | {m} | {np.median(c['seconds']):.1f} | {c['peak_rss_mb']:,} | {vs_exact} | "
                         f"{span(c['vs_itself_ari'])} |")
    lines += ["", f"Adjusted Rand index, min-max over the seeds. The bar for a method used by default above the exact "
                  f"threshold: {result['bar']} against exact at every size."]
    for m in result["methods"]:
        if m != "spectral-exact":
            worst = min(v for r in result["sizes"] for v in r[m]["vs_exact_ari"])
            verdict = "meets it" if worst >= result["bar"] else "is below it"
            lines.append(f"`{m}`: worst {worst:.2f}, {verdict}.")
    return "\n".join(lines + render_graph_check(result))


def render_graph_check(result: dict) -> list[str]:
    """The sizes above where exact runs: spectral-ann against its own algorithm on the exact k-NN graph."""
    if not result.get("graph_check"):
        return []
    largest = max(result["sizes"], key=lambda r: r["n"])
    exact = largest["spectral-exact"]
    ref = result["graph_reference"]
    lines = ["", f"Above {largest['n']:,} rows scikit-learn's exact method is not run here (at {largest['n']:,} it took "
                 f"{np.median(exact['seconds']):.0f} s and {exact['peak_rss_mb']:,} MB per seed, growing steeply). "
                 f"There `spectral-ann` is compared with `{ref}`: the same algorithm on the exact k-NN graph "
                 "(brute-force neighbours; the same Laplacian, eigensolver and k-means), which isolates what the "
                 "approximate neighbours change.", "",
             f"| rows | method | median s | peak RSS MB | neighbour recall | ARI vs {ref}, per seed "
             "| ARI vs itself across seeds |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in result["graph_check"]:
        for m in (ref, "spectral-ann"):
            c = r[m]
            recall = c["params"].get("neighbour_recall")
            vs = "reference" if m == ref else f"{min(c['vs_exact_ari']):.3f}-{max(c['vs_exact_ari']):.3f}"
            lines.append(f"| {r['n']:,} | {m} | {np.median(c['seconds']):.1f} | {c['peak_rss_mb']:,} | "
                         f"{'1 (exact)' if m == ref else recall} | {vs} | "
                         f"{min(c['vs_itself_ari']):.2f}-{max(c['vs_itself_ari']):.2f} |")
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main()

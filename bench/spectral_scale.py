"""Scale benchmark of `spectral_clusters` (InstructionGPT-4 image clustering, K=10).

    python bench/spectral_scale.py                       # 5k exact + 5k landmark, 100k and 1M landmark
    python bench/spectral_scale.py --sizes 5000 100000   # a subset (5000 always runs both methods)

Data: synthetic Gaussian mixtures of 512-d unit vectors (normalised like CLIP embeddings), 10
centres sharing a common direction, cluster proportions of the paper's public code on its 3,439
examples (1234/880/325/300/286/177/85/80/59/13, shared/docs/reference.md), isotropic noise of norm
2.5 per row (the 10-NN graph is connected; exact spectral clustering recovers the mixture). The
same generator as tests/selection/conftest.py, but written chunk by chunk in float32 inside the
measured child, so the 1M x 512 matrix (2 GB) is never pickled across processes.

Every run is a fresh subprocess; the parent reads that child's own rusage (os.wait4), so the peak
RSS (ru_maxrss) is exactly the child's, data included. The child saves labels and ground truth to
bench/out/spectral_scale/ (gitignored); the parent computes the adjusted Rand indices.
Targets (issue "InstructionGPT-4 selection"): 100k under 2 min, 1M under 15 min, both under 8 GB
of peak RSS; the time judged is the clustering time (data generation is shown separately).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

OUT = HERE / "out" / "spectral_scale"
D = 512
K = 10
SEED = 20240501
NOISE = 2.5
SHARED = 0.6
PROPORTIONS = np.array([1234, 880, 325, 300, 286, 177, 85, 80, 59, 13], dtype=np.float64)
CHUNK = 1 << 16
TARGET_S = {100_000: 120.0, 1_000_000: 900.0}
TARGET_RSS_MB = 8 * 1024


def generate(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(X float32 n x D, truth int64), built CHUNK rows at a time."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(D)
    common /= np.linalg.norm(common)
    centres = rng.standard_normal((K, D))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    centres = (SHARED * common + np.sqrt(1 - SHARED**2) * centres).astype(np.float32)
    p = PROPORTIONS / PROPORTIONS.sum()
    X = np.empty((n, D), dtype=np.float32)
    y = np.empty(n, dtype=np.int64)
    scale = np.float32(NOISE / np.sqrt(D))
    for i, child in enumerate(np.random.SeedSequence(seed).spawn((n + CHUNK - 1) // CHUNK)):
        lo, hi = i * CHUNK, min(n, (i + 1) * CHUNK)
        crng = np.random.default_rng(child)
        y[lo:hi] = crng.choice(K, size=hi - lo, p=p)
        block = crng.standard_normal((hi - lo, D), dtype=np.float32)
        block *= scale
        block += centres[y[lo:hi]]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[lo:hi] = block
    return X, y


def child(n: int, method: str) -> None:
    from visit_assets.lib.selection.clustering import spectral_clusters

    t = time.perf_counter()
    X, y = generate(n)
    gen_s = time.perf_counter() - t
    t = time.perf_counter()
    labels, info = spectral_clusters(X, k=K, seed=0, method=method)
    cluster_s = time.perf_counter() - t
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(OUT / f"{n}_{method}.npz", labels=labels, truth=y)
    params = {key: v for key, v in info["params"].items() if key != "eigenvalues"}
    print(json.dumps({"gen_s": gen_s, "cluster_s": cluster_s, "method": info["method"], "params": params,
                      "stage_seconds": info.get("stage_seconds"), "sizes": info["cluster_sizes"],
                      "warnings": info["warnings"]}))


def run(n: int, method: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "child", "--n", str(n), "--method", method],
                            stdout=subprocess.PIPE, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"child n={n} method={method} failed with exit code {proc.returncode}")
    res = json.loads(out.decode().strip().splitlines()[-1])
    res.update(n=n, wall_s=wall, rss_mb=usage.ru_maxrss / 1024)  # Linux: ru_maxrss in KiB
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "child"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5_000, 100_000, 1_000_000])
    ap.add_argument("--n", type=int)
    ap.add_argument("--method", default="auto")
    args = ap.parse_args()
    if args.mode == "child":
        child(args.n, args.method)
        return

    from sklearn.metrics import adjusted_rand_score

    plan = []
    for n in args.sizes:
        if n <= 20_000:
            plan.append((n, "spectral-exact"))
        plan.append((n, "spectral-landmark"))
    print(f"host: {os.cpu_count()} CPUs; d={D}, k={K}, noise={NOISE}; one fresh child per row", flush=True)
    results = []
    for n, method in plan:
        res = run(n, method)
        data = np.load(OUT / f"{n}_{method}.npz")
        res["ari_truth"] = adjusted_rand_score(data["truth"], data["labels"])
        res["ari_exact"] = None
        if method == "spectral-landmark" and (OUT / f"{n}_spectral-exact.npz").exists() and n <= 20_000:
            res["ari_exact"] = adjusted_rand_score(np.load(OUT / f"{n}_spectral-exact.npz")["labels"], data["labels"])
        results.append(res)
        print(json.dumps({k: res[k] for k in ("n", "method", "cluster_s", "rss_mb", "stage_seconds", "params", "warnings")}),
              flush=True)

    print()
    head = f"{'rows':>9} {'method':<18} {'gen s':>7} {'cluster s':>10} {'wall s':>8} {'peak RSS MB':>12} " \
           f"{'ARI truth':>10} {'ARI exact':>10} {'target':>16}"
    print(head)
    print("-" * len(head))
    for r in results:
        limit = TARGET_S.get(r["n"])
        target = "-" if limit is None else (
            f"<{limit:.0f}s,<8GB " + ("ok" if r["cluster_s"] < limit and r["rss_mb"] < TARGET_RSS_MB else "MISS"))
        ari_exact = "-" if r["ari_exact"] is None else f"{r['ari_exact']:.3f}"
        print(f"{r['n']:>9,} {r['method']:<18} {r['gen_s']:>7.1f} {r['cluster_s']:>10.1f} {r['wall_s']:>8.1f} "
              f"{r['rss_mb']:>12,.0f} {r['ari_truth']:>10.3f} {ari_exact:>10} {target:>16}")


if __name__ == "__main__":
    main()

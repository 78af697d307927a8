"""k-means + LLM merge at MM-Instruct scale: 50,000 generated instructions into k=300.

    .venv/bin/python bench/instruction_clustering.py [--n 50000] [--k 300] [--merge all|N] [--write-docs]

Synthetic instructions (task x subject x style x audience, deterministic) go through the same
functions the `clustered_instructions` asset uses: the packaged MiniLM embedder, k-means, and the
merge requests through the packaged SmolLM2 (llama.cpp, fresh cache). Time and peak RSS per stage;
raw results bench/results/instruction_clustering-<date>.json (with the machine's facts); --write-docs
renders its section of docs/benchmarks.md from the newest result file.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import commit, machine, save_result  # noqa: E402

from visit_assets.lib.llm import LLMCache, LLMClient, make_backend
from visit_assets.lib.mminstruct import cluster as cluster_mod
from visit_assets.lib.mminstruct.generate import dedupe_exact
from visit_assets.lib.models.embedder import SentenceEmbedder

TASKS = ["Write a short story", "Compose a poem", "Draft a social media post", "Give practical advice", "Plan a day",
         "Summarise the scene", "Compare two viewpoints", "Write an advertisement", "Create a lesson plan",
         "Describe the mood", "Invent a dialogue", "List five questions", "Write a news headline", "Suggest improvements"]
SUBJECTS = ["about this scene", "inspired by this picture", "for the place shown", "about the main object",
            "about the people here", "about the weather in the image", "about the colours", "about the animal shown",
            "about the food in the photo", "about the building"]
STYLES = ["in a humorous tone", "for children", "in three sentences", "as a haiku", "in a formal voice",
          "with vivid sensory detail", "from a tourist's view", "as a list", "in under 50 words", "with a twist ending",
          "for a travel blog", "for a museum label"]
AUDIENCES = ["", " for beginners", " for experts", " for a teenager", " for a grandparent", " for a friend",
             " for a class of ten-year-olds", " for a marketing team", " for a local newspaper", " for a podcast",
             " for a museum visitor", " for a hiking club", " for a cooking show", " for a science fair",
             " for a job interview", " for a birthday card", " for a postcard", " for a diary entry",
             " for a radio ad", " for a comic strip", " for a school newsletter", " for a city guide",
             " for a photography club", " for a book club", " for a charity appeal", " for a garden club",
             " for an art class", " for a history lesson", " for a farewell note", " for a wedding toast"]


def synthetic_instructions(n: int, seed: int = 0) -> list[str]:
    combos = [f"{t} {s} {st}{a}." for t, s, st, a in itertools.product(TASKS, SUBJECTS, STYLES, AUDIENCES)]
    random.Random(seed).shuffle(combos)
    if n > len(combos):
        raise SystemExit(f"only {len(combos)} distinct synthetic instructions; ask for fewer")
    return combos[:n]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--k", type=int, default=300)
    p.add_argument("--merge", default="all", help="'all' clusters or a number of clusters to merge")
    p.add_argument("--write-docs", action="store_true")
    p.add_argument("--conditions", default="", help="what else ran on the machine (shown beside the timings)")
    args = p.parse_args()
    rows = []
    t0 = time.perf_counter()
    groups = dedupe_exact(synthetic_instructions(args.n))
    texts = [g.text for g in groups]
    embedder = SentenceEmbedder()
    vectors = embedder.encode(texts)
    rows.append(("embed (MiniLM, CPU)", time.perf_counter() - t0, peak_mb(), f"{len(texts):,} x {vectors.shape[1]}"))
    t1 = time.perf_counter()
    labels, info = cluster_mod.cluster_instructions(vectors, args.k, 0)
    clusters = cluster_mod.group_clusters([g.instruction_id for g in groups], texts, vectors, labels)
    rows.append((f"k-means, k={args.k}", time.perf_counter() - t1, peak_mb(), f"{info.algorithm}, k_used {info.k_used}"))
    jobs = cluster_mod.merge_requests(clusters)
    if args.merge != "all":
        jobs = jobs[: int(args.merge)]
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        client = LLMClient(make_backend("llama_cpp"), LLMCache(Path(tmp) / "cache.sqlite"))
        results = client.generate([j.request for j in jobs])
        merged = [cluster_mod.merged_row(j, r) for j, r in zip(jobs, results, strict=True)]
    ok = sum(m["status"] == "ok" for m in merged)
    rows.append(("LLM merge (SmolLM2)", time.perf_counter() - t2, peak_mb(), f"{len(jobs)} clusters, {ok} merged ok, "
                 f"{client.stats.tokens_out:,} tokens out"))
    result = {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(), "n": args.n,
              "k": args.k, "merge": args.merge, "conditions": args.conditions, "total_s": round(time.perf_counter() - t0, 1),
              "stages": [{"stage": name, "wall_s": round(secs, 1), "peak_rss_mb": round(mb), "details": details}
                         for name, secs, mb, details in rows]}
    print(render(result))
    save_result("instruction_clustering", result, render, args.write_docs, "k-means + merge at MM-Instruct scale")


def render(r: dict) -> str:
    peak = max(s["peak_rss_mb"] for s in r["stages"])
    lines = [f"`.venv/bin/python bench/instruction_clustering.py --write-docs` — {r['n']:,} distinct synthetic "
             "instructions (task x subject x style x audience) through the `clustered_instructions` functions: packaged "
             f"MiniLM embeddings, k-means with k={r['k']} (MiniBatchKMeans above 20,000 rows), then one merge request per "
             f"cluster through SmolLM2 on llama.cpp (fresh cache). Raw results: bench/results/instruction_clustering-"
             f"{r['date']}.json ({r['date']}, commit {r['commit']}, {r['machine']['cores']} cores)."
             + (f" Timings: {r['conditions']}." if r.get("conditions") else ""), "",
             "| stage | wall s | peak RSS MB | details |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {s['stage']} | {s['wall_s']:.1f} | {s['peak_rss_mb']:,} | {s['details']} |" for s in r["stages"]]
    lines.append(f"| **total** | **{r['total_s']:.1f}** | **{peak:,}** | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

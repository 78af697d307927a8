"""k-means + LLM merge at MM-Instruct scale: 50,000 generated instructions into k=300.

    .venv/bin/python bench/instruction_clustering.py [--n 50000] [--k 300] [--merge all|N]

Synthetic instructions (task x subject x style x audience, deterministic) go through the same
functions the `clustered_instructions` asset uses: the packaged MiniLM embedder, k-means, and the
merge requests through the packaged SmolLM2 (llama.cpp, fresh cache). Prints time and peak RSS
per stage.
"""

from __future__ import annotations

import argparse
import itertools
import random
import resource
import tempfile
import time
from pathlib import Path

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
    args = p.parse_args()
    rows = []
    t0 = time.perf_counter()
    groups = dedupe_exact(synthetic_instructions(args.n))
    texts = [g.text for g in groups]
    embedder = SentenceEmbedder()
    vectors = embedder.encode(texts)
    rows.append(("embed (MiniLM)", time.perf_counter() - t0, peak_mb(), f"{len(texts)} instructions, dim {vectors.shape[1]}"))
    t1 = time.perf_counter()
    labels, info = cluster_mod.cluster_instructions(vectors, args.k, 0)
    clusters = cluster_mod.group_clusters([g.instruction_id for g in groups], texts, vectors, labels)
    rows.append(("k-means", time.perf_counter() - t1, peak_mb(), f"{info.algorithm}, k_used {info.k_used}"))
    jobs = cluster_mod.merge_requests(clusters)
    if args.merge != "all":
        jobs = jobs[: int(args.merge)]
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        client = LLMClient(make_backend("llama_cpp"), LLMCache(Path(tmp) / "cache.sqlite"))
        results = client.generate([j.request for j in jobs])
        merged = [cluster_mod.merged_row(j, r) for j, r in zip(jobs, results)]
    ok = sum(m["status"] == "ok" for m in merged)
    rows.append(("LLM merge (SmolLM2)", time.perf_counter() - t2, peak_mb(), f"{len(jobs)} clusters, {ok} merged ok, "
                 f"{client.stats.tokens_out} tokens out"))
    print(f"{'stage':22s} {'wall s':>8s} {'peak RSS MB':>12s}  details")
    for name, secs, mb, details in rows:
        print(f"{name:22s} {secs:8.1f} {mb:12.0f}  {details}")
    print(f"{'total':22s} {time.perf_counter() - t0:8.1f}")


if __name__ == "__main__":
    main()

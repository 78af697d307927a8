"""Diversity of the generated instructions in a store, side by side with the seeds themselves.

    .venv/bin/python bench/instruction_diversity.py [--store visit_data/store] [--dataset sample]

Reads the current `generated_instructions` (status ok) of every shard and compares: distinct root
verbs and mean ROUGE-L to the nearest seed (MM-Instruct, Figure 7).
"""

from __future__ import annotations

import argparse
import json

import polars as pl

from visit_assets.lib.mminstruct.diversity import diversity_report, seeds_report
from visit_assets.lib.mminstruct.seeds import load_seeds
from visit_assets.lib.storage import ParquetStore


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default="visit_data/store")
    p.add_argument("--dataset", default="sample")
    p.add_argument("--shards", type=int, default=4)
    args = p.parse_args()
    store = ParquetStore(args.store)
    frames = [store.read("generated_instructions", args.dataset, s) for s in range(args.shards)]
    generated = pl.concat(frames, how="diagonal_relaxed").filter(pl.col("status") == "ok")["instruction"].to_list()
    seeds = [s.text for s in load_seeds()]
    rows = {"generated": diversity_report(generated, seeds), "seeds (leave-one-out)": seeds_report(seeds)}
    for name, r in rows.items():
        print(f"{name:22s} n={r['instructions']:4d}  distinct root verbs={r['distinct_root_verbs']:3d}  "
              f"mean ROUGE-L to nearest seed={r['mean_rouge_l_to_nearest_seed']}")
    print(json.dumps(rows["generated"]["top_root_verbs"]))


if __name__ == "__main__":
    main()

"""`make sample` as a user runs it, and what it made: the figures of docs/benchmarks.md's sample section.

    .venv/bin/python bench/sample_run.py [--write-docs]

Runs `visit-assets run-sample` (what `make sample` runs) in its own process with a fresh VISIT_HOME
under bench/out/sample_run/ (the environment already built), times it, then reads the store:
Instructify's attempts (iterations, pairs parsed and judged, accepted, facts used, rejections),
MM-Instruct's chain (instructions, merges, matches, answers kept and why not), the InstructionGPT-4
selection on the imported conversations (selected vs not: length, CLIP, judge, F), and the
instruction diversity against the seeds (MM-Instruct Figure 7: root verbs, ROUGE-L). Raw results:
bench/results/sample_run-<date>.json with the machine's facts; --write-docs renders the section of
docs/benchmarks.md between its markers from the newest result file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out" / "sample_run"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from common import commit, machine, save_result  # noqa: E402


def run_sample(home: Path) -> float:
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "VISIT_HOME": str(home), "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("DAGSTER_HOME", None)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "visit_assets.cli", "run-sample"], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 1) if values else None


def read_store(home: Path) -> dict:
    import polars as pl

    from visit_assets import settings
    from visit_assets.lib.mminstruct.diversity import diversity_report, seeds_report
    from visit_assets.lib.mminstruct.seeds import load_seeds
    from visit_assets.lib.storage import ParquetStore

    store = ParquetStore(home / "store")
    shards = list(range(settings.n_shards()))
    attempts = store.read_shards("conversation_attempts", "sample", shards)
    ins = attempts.filter(pl.col("recipe") == "instructify")
    tried = ins.filter(pl.col("status") != "stopped")
    verdicts = [v for vs in tried["verdicts"].to_list() for v in (vs or [])]
    facts_total = ins.group_by("image_id").agg(pl.col("facts_total").max())["facts_total"].sum()
    used = sum(len(c or []) for c in tried.filter(pl.col("status") == "accepted")["consumed_fact_ids"].to_list())
    generated = store.read_shards("generated_conversations", "sample", shards)
    kept = store.read_shards("filtered_conversations", "sample", shards)
    rejects = store.read_shards("conversation_rejects", "sample", shards)
    instructions = store.read_shards("generated_instructions", "sample", shards)
    merged = store.read("clustered_instructions", "sample")
    ranking = store.read("selection_ranking", "sample")
    scores = store.read("quality_scores", "sample").join(ranking.select("conversation_id", "selected", "F"),
                                                         on="conversation_id")
    pairwise = store.read("pairwise_evaluation", "sample")
    clusters = store.read("image_clusters", "sample")
    seeds = [s.text for s in load_seeds()]
    ok = instructions.filter(pl.col("status") == "ok")["instruction"].to_list()
    side = {}
    for name, chosen in (("selected", True), ("not selected", False)):
        part = scores.filter(pl.col("selected") == chosen)
        side[name] = {"conversations": part.height, "answer_chars": _mean(len(a) for a in part["answer"].to_list()),
                      "clip": _mean(part["clip_raw"].to_list()), "judge": _mean(part["judge_raw"].to_list()),
                      "F": _mean(part["F"].to_list())}
    return {
        "instructify": {
            "images": ins["image_id"].n_unique(), "iterations": tried.height,
            "pairs_parsed": int(tried["pairs_parsed"].fill_null(0).sum()), "pairs_judged": len(verdicts),
            "pairs_accepted": sum(v is True for v in verdicts),
            "conversations": generated.filter(pl.col("recipe") == "instructify").height,
            "kept": kept.filter(pl.col("recipe") == "instructify").height,
            "share_of_facts_used": round(used / facts_total, 3) if facts_total else None,
            "rejected_by_reason": dict(Counter(tried.filter(pl.col("status") == "rejected")["reason"].to_list())),
        },
        "mminstruct": {
            "instruction_attempts": instructions.height,
            "instructions_by_status": dict(Counter(instructions["status"].to_list())),
            "merged_by_status": dict(Counter(merged["status"].to_list())),
            "matched_images": store.read_shards("instruction_matches", "sample", shards).height,
            "answers": generated.filter(pl.col("recipe") == "mm-instruct").height,
            "kept": kept.filter(pl.col("recipe") == "mm-instruct").height,
            "rejected_by_reason": dict(Counter(rejects.filter(pl.col("recipe") == "mm-instruct")["reason"].to_list())),
        },
        "selection": {
            "scored": scores.height, "sides": side, "weights_used": json.loads(ranking["weights_used"][0]),
            "selection_method": json.loads(ranking["selection_method"][0]),
            "judge_status": dict(Counter(scores["judge_status"].to_list())),
            "clusters": clusters["cluster"].n_unique(), "cluster_method": sorted(set(clusters["method"])),
            "pairwise": dict(Counter(pairwise["outcome"].to_list())),
        },
        "diversity": {"generated": diversity_report(ok, seeds),
                      "seeds": seeds_report(seeds)},
    }


def render(r: dict) -> str:
    i, m, s, d = r["instructify"], r["mminstruct"], r["selection"], r["diversity"]
    sel, rest = s["sides"]["selected"], s["sides"]["not selected"]
    minutes, seconds = divmod(round(r["wall_s"]), 60)
    reasons = lambda c: ", ".join(f"{v} {k}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "none"  # noqa: E731
    return "\n".join([
        f"`.venv/bin/python bench/sample_run.py --write-docs` — `make sample`'s command (`visit-assets run-sample`, "
        f"the sample's laptop settings) with a fresh `VISIT_HOME`, the environment already built: **{minutes} min "
        f"{seconds} s** on {r['machine']['cores']} cores. SmolLM2-135M-Instruct Q4_1 through llama.cpp does every LLM "
        f"step. Raw results: `bench/results/sample_run-{r['date']}.json` ({r['date']}, commit {r['commit']}).", "",
        "Instructify, from `conversation_attempts`:", "",
        "| measure | value |", "| --- | ---: |",
        f"| images / sampling iterations | {i['images']} / {i['iterations']} |",
        f"| QA pairs parsed / judged by the verifier | {i['pairs_parsed']} / {i['pairs_judged']} |",
        f"| QA pairs the verifier accepted | {i['pairs_accepted']} of {i['pairs_judged']} |",
        f"| conversations made / kept by the filters | {i['conversations']} / {i['kept']} |",
        f"| share of facts used | {i['share_of_facts_used']} |", "",
        f"Rejected iterations: {reasons(i['rejected_by_reason'])}.", "",
        f"MM-Instruct: {m['instruction_attempts']} instruction attempts ({reasons(m['instructions_by_status'])}) -> "
        f"merges {reasons(m['merged_by_status'])} -> {m['matched_images']} images matched -> {m['answers']} answers -> "
        f"{m['kept']} kept by `filtered_conversations` (removed: {reasons(m['rejected_by_reason'])}).", "",
        f"InstructionGPT-4 selection over the {s['scored']} scored conversations ({json.dumps(s['selection_method'])}; "
        f"{s['clusters']} image clusters, {', '.join(s['cluster_method'])}; weights used "
        f"{', '.join(f'{k} {v:.2f}' for k, v in s['weights_used'].items() if v)}):", "",
        "| | selected | not selected |", "| --- | ---: | ---: |",
        f"| conversations | {sel['conversations']} | {rest['conversations']} |",
        f"| mean answer length (characters) | {sel['answer_chars']} | {rest['answer_chars']} |",
        f"| mean CLIP score (here: description-answer similarity, MiniLM) | {sel['clip']} | {rest['clip']} |",
        f"| mean judge score (SmolLM2, 0-100) | {sel['judge']} | {rest['judge']} |",
        f"| mean F (rows that have one) | {sel['F']} | {rest['F']} |", "",
        f"Judge replies: {reasons(s['judge_status'])}. Pairwise evaluation: {reasons(s['pairwise'])}.", "",
        "Instruction diversity (MM-Instruct Figure 7 analysis; root verb = first word, no dependency parser):", "",
        "| set | n | distinct root verbs | mean ROUGE-L to nearest seed |", "| --- | ---: | ---: | ---: |",
        f"| generated by SmolLM2-135M (status ok) | {d['generated']['instructions']} | "
        f"{d['generated']['distinct_root_verbs']} | {d['generated']['mean_rouge_l_to_nearest_seed']} |",
        f"| the seeds, each against the others | {d['seeds']['instructions']} | {d['seeds']['distinct_root_verbs']} | "
        f"{d['seeds']['mean_rouge_l_to_nearest_seed']} |",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    home = OUT / "home"
    wall = run_sample(home)
    result = {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(),
              "wall_s": round(wall, 1), **read_store(home)}
    print(render(result))
    save_result("sample_run", result, render, args.write_docs, "The sample through the packaged 135M model (`make sample`)")


if __name__ == "__main__":
    main()

"""The sample through a competent stand-in: what the product makes with a model that answers well,
and how each filter and the verifier fare against planted faults.

    .venv/bin/python bench/standin_rehearsal.py [--seeds 3] [--write-docs]

Runs the whole graph on the embedded sample with every LLM request answered by the stand-in (a
test instrument, visit_assets/lib/standin; its rows are marked not real), once per fault seed
with the default fault rates, and once with every prompt type tried (rehearsal.every_type_weights) and no faults.
Sums each check's confusion counts over the seeds. Raw results:
bench/results/standin_rehearsal-<date>.json, with the machine's facts; --write-docs renders the
section of docs/benchmarks.md between its markers from that file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- standin_rehearsal:begin -->", "<!-- standin_rehearsal:end -->"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    return {"cpu": model.group(1) if model else platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version()}


def _sum_checks(reports: list[dict]) -> dict[str, dict]:
    total: dict[str, Counter] = {}
    for r in reports:
        for recipe, key in (("instructify", "instructify"), ("mm-instruct", "mminstruct")):
            for name, c in r[key]["checks"].items():
                total.setdefault(f"{recipe}: {name}", Counter()).update({k: c[k] for k in ("tp", "fp", "fn", "tn")})
    from visit_assets.lib.standin.scoring import rates

    return {name: rates(c["tp"], c["fp"], c["fn"], c["tn"]) for name, c in total.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="fault seeds to run (each a fresh run of the sample)")
    parser.add_argument("--write-docs", action="store_true", help="render the docs/benchmarks.md section from the results")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from visit_assets import rehearsal
    from visit_assets.lib.standin.faults import FaultPlan

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    result: dict = {"date": datetime.date.today().isoformat(), "commit": commit, "machine": machine(),
                    "fault_rates": rehearsal.DEFAULT_FAULTS, "runs": []}
    scratch = Path(tempfile.mkdtemp(prefix="visit-rehearsal-"))
    for seed in range(args.seeds):
        start = time.perf_counter()
        r = rehearsal.run(scratch / f"seed{seed}", FaultPlan(rehearsal.DEFAULT_FAULTS, seed=seed), log=lambda _: None)
        result["runs"].append({"seed": seed, "wall_s": round(time.perf_counter() - start, 1), "report": r})
        print(f"fault seed {seed}: {result['runs'][-1]['wall_s']} s", flush=True)
    start = time.perf_counter()
    every = rehearsal.every_type_weights()
    r = rehearsal.run(scratch / "every-type", FaultPlan({}), generation={"prompt_weights": every}, log=lambda _: None)
    result["every_type"] = {"wall_s": round(time.perf_counter() - start, 1), "weights": every, "report": r}
    result["checks"] = _sum_checks([x["report"] for x in result["runs"]])
    shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"standin_rehearsal-{result['date']}.json"
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    section = render(result, out.relative_to(REPO))
    print(section)
    if args.write_docs:
        text = DOCS.read_text()
        if BEGIN not in text:
            sys.exit(f"{DOCS} has no {BEGIN} marker")
        head, rest = text.split(BEGIN, 1)
        DOCS.write_text(head + BEGIN + "\n" + section + "\n" + END + rest.split(END, 1)[1])
    print(f"raw results: {out}")


def _table(rows: list[tuple], head: tuple) -> str:
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def render(result: dict, path: Path) -> str:
    runs = [x["report"] for x in result["runs"]]
    every = result["every_type"]["report"]
    accepted: Counter = Counter()
    tried: Counter = Counter()
    reasons: Counter = Counter()
    for r in runs:
        accepted.update(r["instructify"]["accepted_by_prompt"])
        tried.update(r["instructify"]["attempts_by_prompt"])
        reasons.update({str(k): v for k, v in r["rejects_by_reason"].items()})
    share = runs[0]["instructify"]["registry_share"]
    mm = Counter()
    for r in runs:
        mm.update({k: r["mminstruct"][k] for k in ("generated_instructions_ok", "merged_ok", "matches", "answers", "kept")})
    parts = [
        f"`.venv/bin/python bench/standin_rehearsal.py --seeds {len(runs)} --write-docs` — the whole graph on the sample "
        f"(16 images) with every LLM request answered by the stand-in (a test instrument: its rows say model "
        f"`{runs[0]['model']}`, weights `stand-in`, not real), {len(runs)} runs with planted faults (seeds "
        f"0-{len(runs) - 1}, rates {', '.join(f'{k} {v}' for k, v in result['fault_rates'].items())}) and one "
        f"{_every_type_text(result['every_type'].get('weights'))} and no faults. Raw results: `{path}` ({result['date']}, "
        f"commit {result['commit']}, {result['machine']['cores']} cores). Each run took "
        f"{', '.join(str(x['wall_s']) for x in result['runs'])} s; the every-type run {result['every_type']['wall_s']} s.",
        "", "Instructify, summed over the fault runs (registry weights):", "",
        _table([(k, round(share.get(k, 0), 3), tried[k], accepted[k], every["instructify"]["accepted_by_prompt"].get(k, 0))
                for k in sorted(share)],
               ("prompt type", "registry share", "attempts", "accepted", "accepted in the every-type run")),
        "", "Each check against the planted faults (summed over the fault runs; a pair, reply or answer is one item):", "",
        _table([(k, c["tp"], c["fp"], c["fn"], c["tn"], c["precision"], c["recall"]) for k, c in result["checks"].items()],
               ("check", "tp", "fp", "fn", "tn", "precision", "recall")),
        "", "Rejected conversations by reason (summed): " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ".",
        "", "MM-Instruct chain (summed): " + ", ".join(f"{k} {v}" for k, v in mm.items()) + ".",
        "", "Instructify outcomes per reply, first fault run: " + "; ".join(
            f"{k}: {v}" for k, v in runs[0]["instructify"]["outcomes"].items()) + ".",
    ]
    return "\n".join(parts)


def _every_type_text(weights: dict | None) -> str:
    """How the every-type run weighted the prompt types (result files before it recorded them: equal)."""
    if not weights or len(set(weights.values())) == 1:
        return "with every prompt type at equal weight"
    up = sorted(k for k, w in weights.items() if w > 1)
    return (f"trying every prompt type (equal weights, but {', '.join(up)}, which need a fact kind, weigh "
            f"{max(weights.values()):g} each, as much as all the types without such a need together)")


if __name__ == "__main__":
    main()

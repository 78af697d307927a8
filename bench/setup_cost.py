"""What a new user pays: set-up on a fresh machine, then the README's two commands, in a fresh clone.

    python3 bench/setup_cost.py [--with-tests]

Clones the repository's HEAD into a scratch folder and, side by side in one run:
1. `scripts/env.sh` with an empty environment folder, an empty pip cache and an empty llama.cpp
   wheel cache (a fresh machine: every package downloaded, llama.cpp compiled), then
2. the same with the caches that step 1 left (a machine that has built it before, as CI on it: no
   compile, only the copying remains), and prints their ratio;
3. `make sample` in the clone, on the environment of step 1, per wave from its own log;
4. with --with-tests, `make test` in the clone.
Each set-up step's phases come from the "[set-up] N s: ..." lines scripts/install_env.sh writes.
Raw results: bench/results/setup_cost-<date>.json, with the machine's facts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    flags = re.search(r"flags\s*:\s*(.*)", cpuinfo)
    wanted = ("avx2", "fma", "f16c", "avx512f", "amx_tile", "amx_int8")
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()) if Path("/proc/meminfo").exists() else None
    return {"cpu": model.group(1) if model else platform.processor(), "cores": os.cpu_count(),
            "cpu_flags": [f for f in wanted if flags and f in flags.group(1).split()],
            "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
            "python": platform.python_version(), "kernel": platform.release()}


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}); log: {log}\n{log.read_text()[-3000:]}")
    return took


def phases(venv_log: Path) -> dict[str, int]:
    return {m.group(2): int(m.group(1)) for m in re.finditer(r"^\[set-up\] (\d+) s: (.*)$", venv_log.read_text(), re.M)}


def setup(clone: Path, scratch: Path, name: str, pip_cache: Path) -> dict:
    venv = scratch / name / "venv"
    env = {**os.environ, "VISIT_ASSETS_VENV": str(venv), "PIP_CACHE_DIR": str(pip_cache),
           "VISIT_WHEEL_CACHE": str(pip_cache.parent / "llama-wheels")}
    took = timed(["bash", "scripts/env.sh"], clone, env, scratch / f"{name}.out")
    size = subprocess.run(["du", "-sm", str(venv)], capture_output=True, text=True).stdout.split()[0]
    return {"wall_s": round(took, 1), "phases_s": phases(Path(f"{venv}.log")), "venv_mb": int(size), "venv": str(venv)}


def sample(clone: Path, scratch: Path, venv: str) -> dict:
    log = scratch / "sample.out"
    env = {**os.environ, "VISIT_ASSETS_VENV": venv}
    took = timed(["make", "sample"], clone, env, log)
    return {"wall_s": round(took, 1), "summary_tail": log.read_text().splitlines()[-6:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--with-tests", action="store_true", help="also time `make test` in the clone")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (environments, logs)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="visit-setup-cost-"))
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True,
                            text=True).stdout.strip()
    print(f"fresh clone of {commit} in {clone}", flush=True)
    result: dict = {"date": datetime.date.today().isoformat(), "commit": commit, "machine": machine()}
    out = RESULTS / f"setup_cost-{result['date']}.json"

    def save() -> None:  # after every step, so a stopped run keeps what it measured
        RESULTS.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run `finally` when stopped
    try:
        pip_cache = scratch / "pip-cache"
        result["setup_empty_pip_cache"] = cold = setup(clone, scratch, "cold", pip_cache)
        print(f"set-up, fresh machine (empty pip cache): {cold['wall_s']:.0f} s, {cold['venv_mb']} MB", flush=True)
        save()
        result["setup_warm_pip_cache"] = warm = setup(clone, scratch, "warm", pip_cache)
        print(f"set-up, pip cache warm: {warm['wall_s']:.0f} s", flush=True)
        result["setup_ratio_cold_over_warm"] = round(cold["wall_s"] / warm["wall_s"], 2)
        print(f"ratio fresh / warm: {result['setup_ratio_cold_over_warm']}x", flush=True)
        shutil.rmtree(Path(warm["venv"]))
        result["make_sample"] = sample(clone, scratch, cold["venv"])
        print(f"make sample: {result['make_sample']['wall_s']:.0f} s", flush=True)
        save()
        if args.with_tests:
            env = {**os.environ, "VISIT_ASSETS_VENV": cold["venv"]}
            result["make_test_s"] = round(timed(["make", "test"], clone, env, scratch / "test.out"), 1)
            result["make_test_tail"] = (scratch / "test.out").read_text().splitlines()[-1]
            print(f"make test: {result['make_test_s']:.0f} s ({result['make_test_tail']})", flush=True)
    finally:
        save()
        print(f"raw results: {out}")
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

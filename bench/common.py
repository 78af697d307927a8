"""What the benchmarks share: the machine's facts for their result files, their section of
docs/benchmarks.md (between `<!-- NAME:begin -->` and `<!-- NAME:end -->`), and the stand-in model
served from its own process."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    return {"cpu": model.group(1) if model else platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version()}


def commit() -> str:
    """The code measured: HEAD, marked "-dirty" when the working tree differs from it in anything but
    the benchmarks' own outputs (result files, docs/benchmarks.md), which a run of benches writes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout

    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]  # "XY path": no strip
    code = [p for p in changed if not (p.startswith("bench/results/") or p == "docs/benchmarks.md")]
    return git("rev-parse", "--short", "HEAD").strip() + ("-dirty" if code else "")


def open_instance(dagster_home: Path):
    """The Dagster instance a bench's run recorded into (a context manager)."""
    import dagster as dg

    return dg.DagsterInstance.from_ref(dg._core.instance.ref.InstanceRef.from_dir(str(dagster_home)))


def run_child(args: list[str], what: str) -> dict:
    """Run `python <args>` in a fresh interpreter whose last "RESULT {json}" line is its result; add
    the wall time and the child's own peak RSS (os.wait4), so stages never contaminate each other."""
    import time

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{what} failed (exit {code}):\n{out}")
    result = next(json.loads(line[7:]) for line in reversed(out.splitlines()) if line.startswith("RESULT "))
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, **result}


def save_result(name: str, result: dict, render, write_docs: bool, heading: str, section: str | None = None) -> Path:
    """Write `result` to bench/results/<name>-<date>.json; with `write_docs`, render the newest
    <name>-*.json into docs/benchmarks.md's section `section` (default <name>; under `heading` when new)."""
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"{name}-{result['date']}.json"
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"raw results: {out}")
    if write_docs:
        newest = json.loads(sorted(results.glob(f"{name}-*.json"))[-1].read_text())
        write_section(section or name, render(newest), heading)
    return out


def write_section(name: str, body: str, heading: str) -> None:
    """Replace the section between NAME's markers with `body`, or append it under `heading`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = DOCS.read_text()
    section = f"{begin}\n{body}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text += f"\n## {heading}\n\n{section}\n"
    DOCS.write_text(text)


class StandIn:
    """`visit-assets stand-in` in its own process (no faults), so its CPU is not the product's; `url`
    is its base URL, `cpu_s()` the CPU it has used so far, `stats()` its replies, tokens and busy time.
    Zero latency unless given the stand-in's serving-speed options (e.g. {"total-tokens-per-s": 8000})."""

    def __init__(self, speed: dict[str, float] | None = None, log: Path | None = None):
        self.speed, self.log = speed or {}, log

    def __enter__(self) -> StandIn:
        options = [f"--{k}={v}" for k, v in self.speed.items()] + ([f"--log={self.log}"] if self.log else [])
        self.proc = subprocess.Popen([sys.executable, "-m", "visit_assets.cli", "stand-in", "--port", "0", "--faults", "",
                                      *options], stdout=subprocess.PIPE, text=True, cwd=REPO)
        line = self.proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/v1", line)
        if not found:
            self.proc.kill()
            raise RuntimeError(f"the stand-in did not start: {line!r}")
        self.url = found.group(0)
        return self

    def stats(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/stand-in/stats", timeout=60) as reply:
            return json.loads(reply.read())

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)

"""The whole graph on a COCO-shaped dataset with images, through the stand-in: cost per stage.

    .venv/bin/python bench/coco_graph.py --images 1000 [--shards 4] [--write-docs]
    .venv/bin/python bench/coco_graph.py dataset --images 10000     # only write the dataset folder

The dataset (bench/out/coco_graph/coco-<n>/, gitignored, seeded: the same bytes every time) has n
images of COCO train2017's shape and the real per-image counts (5 captions, some a sixth; ~7.3
instances with boxes), with images written at the declared sizes (plain synthetic pictures, a few
KB each). The graph runs as users run it, `visit-assets run <folder>` in its own process and
VISIT_HOME, every LLM role answered by the stand-in (a test instrument, its own process, zero
latency, no faults), without CLIP weights (the documented fallback). Two modes, and a server option:

  --mode stages  (default) one `visit-assets run <folder> --assets <stage>` process per stage (a
                 step's assets together), upstream first: each stage's wall time, CPU time and peak
                 RSS are its own process's (os.wait4), so memory is measured per stage
  --mode whole   one `visit-assets run <folder>` for the whole graph (every step in one process)
  --mode daemon  the folder dropped into `dagster dev`'s watched folder, the sensors run the graph as
                 they do for a user of the UI (bench/coco_daemon.py): wall time from the drop to the
                 last run's end (no CPU or RSS: the runs are the daemon's processes)
  --gpu          the stand-in emulates one GPU server (GPU_SERVER: tokens/s shared, requests at once)
                 and logs each reply's tokens: per LLM step, wall time / the server's busy time for the
                 replies that finished in it (issue #13's overhead ratio); --lanes N sets Instructify's
                 sampling lanes (default: the product's), to measure them side by side
  --resume       (stages mode) keep the home and run only the stages earlier invocations did not finish:
                 a graph too long for one sitting (COCO's 118k images on 2 cores) measured over several,
                 resumed by partitions and the response cache as a user's run would be
Both record, per asset: the wall time of its steps (STEP_START to STEP_SUCCESS, summed over
partitions), rows out, LLM requests, cache hits and requests sent (materialization metadata); and
the Dagster runs and event-log rows created.
Raw results: bench/results/coco_graph-<n>-<mode>[-gpu][-lanesN]-<date>.json with the machine's facts; --write-docs
renders the section of docs/benchmarks.md between its markers from the newest result files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
OUT = HERE / "out" / "coco_graph"
RESULTS = HERE / "results"
SEED = 2017
SET_VERSION = "v1"  # bump when the dataset's bytes change
COCO_IMAGES = 118_287
# One GPU server as issue #13 states it: ~8,000 output tokens/s for an 8B model on one H100 (published
# vLLM figures), up to 256 requests decoding at once.
GPU_SERVER = {"total-tokens-per-s": 8000, "max-concurrency": 256}

import coco_scale  # noqa: E402  (the metadata generator with COCO's real counts)
from coco_daemon import run_daemon  # noqa: E402
from common import StandIn, commit, machine, open_instance, write_section  # noqa: E402

# ------------------------------------------------------------------------------------------------
# the dataset
# ------------------------------------------------------------------------------------------------

def _picture(rng: random.Random, width: int, height: int):
    """A plain synthetic picture: a sky-and-ground gradient with a few coloured boxes."""
    from PIL import Image, ImageDraw

    top, bottom = [tuple(rng.randint(30, 230) for _ in range(3)) for _ in range(2)]
    img = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    img = Image.composite(Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top),
                          img.convert("L"))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 4)):
        x, y = rng.randint(0, width - 20), rng.randint(0, height - 20)
        draw.rectangle([x, y, x + rng.randint(10, width // 3), y + rng.randint(10, height // 3)],
                       fill=tuple(rng.randint(0, 255) for _ in range(3)))
    return img


def make_dataset(n: int) -> Path:
    """The n-image dataset folder (written once): images/ + annotations/{captions,instances}.json."""
    folder = OUT / f"coco-{n}"
    done = folder / "DONE"
    if done.exists() and json.loads(done.read_text()).get("version") == SET_VERSION:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    t0 = time.perf_counter()
    rng = random.Random(SEED)
    images = coco_scale._images(rng)[:n]  # the full set's first n images: the same ids at every size
    captions, instances = [], []
    cap_rng, ins_rng = random.Random(SEED + 1), random.Random(SEED + 2)
    per_image_instances = coco_scale.N_INSTANCES / coco_scale.N_IMAGES
    for im in images:
        for _ in range(5 + (cap_rng.random() < (coco_scale.N_CAPTIONS / coco_scale.N_IMAGES - 5))):
            captions.append({"image_id": im["id"], "id": len(captions) + 1, "caption": coco_scale._caption(cap_rng)})
        k = 0 if ins_rng.random() < 0.009 else min(60, round(ins_rng.expovariate(1 / per_image_instances)))
        for _ in range(k):
            instances.append(json.loads(coco_scale._instance(ins_rng, len(instances) + 1, im)))
    head = json.loads(coco_scale._header() + "}")
    for name, anns, extra in (("captions", captions, {}), ("instances", instances, {"categories": coco_scale.CATEGORIES})):
        body = {**head, "images": images, "annotations": anns, **extra}
        (folder / "annotations" / f"{name}.json").write_text(json.dumps(body, separators=(",", ":")))
    pic_rng = random.Random(SEED + 3)
    for im in images:
        _picture(pic_rng, im["width"], im["height"]).save(folder / "images" / im["file_name"], quality=80)
    (folder / "dataset.yaml").write_text(f"name: coco-{n}\ndescription: synthetic COCO-shaped benchmark set "
                                         f"(bench/coco_graph.py), {n} images\nimages: images\n")
    done.write_text(json.dumps({"version": SET_VERSION, "images": n, "captions": len(captions),
                                "instances": len(instances), "seconds": round(time.perf_counter() - t0, 1)}))
    return folder


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------

def _command(args: list[str], env: dict, log: Path) -> dict:
    """One product command in its own process: wall, CPU and peak RSS from its own rusage."""
    t0 = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.Popen([sys.executable, "-m", "visit_assets.cli", *args], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"visit-assets {' '.join(args)} failed; see {log}")
    return {"wall_s": time.perf_counter() - t0, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024}


def step_groups(env: dict) -> list[list[str]]:
    """The assets in dependency order, grouped by the step that makes them."""
    code = ("import json\nfrom visit_assets.definitions import defs\n"
            "from visit_assets.runner import asset_names, with_execution_sets\n"
            "done, out = set(), []\nfor n in asset_names(defs):\n"
            "    if n not in done:\n        group = with_execution_sets(defs, [n]); done.update(group); out.append(group)\n"
            "print(json.dumps(out))")
    return json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                                     capture_output=True, text=True).stdout)


def run_graph(folder: Path, home: Path, shards: int, mode: str, server_speed: dict | None,
              config: dict | None = None, first_stages: int | None = None,
              resume: bool = False) -> tuple[dict, dict, dict]:
    """(the run's totals, per-stage process figures, the stand-in's stats) of the graph on `folder`
    in a fresh `home`, with `config` as the run command's config file (asset -> run config); in
    stages mode, only the first `first_stages` stages when given. With `resume` (stages mode), the
    home is kept and the stages its earlier invocations finished are not run again (their figures
    come from its progress file), so a graph too long for one sitting is measured over several."""
    from visit_assets.rehearsal import _rehearsal_env

    progress_file = home / "stages_done.json"
    if resume and home.exists() and not progress_file.exists():
        raise SystemExit(f"{home} has no progress file (a whole-mode or older run): run without --resume")
    if not resume:
        shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True, exist_ok=True)
    progress = json.loads(progress_file.read_text()) if resume and progress_file.exists() else \
        {"shards": shards, "stage_processes": {}, "stand_in": {}, "invocations": 0}
    if progress["shards"] != shards:
        raise SystemExit(f"{home} was run with {progress['shards']} shards, not {shards}: drop --resume")
    concurrency = int((server_speed or {}).get("max-concurrency") or 64)
    options = []
    if config:
        (home / "run.yaml").write_text(json.dumps(config))  # JSON is YAML
        options = ["--config", str(home / "run.yaml")]
    with StandIn(server_speed, log=home / "stand_in.jsonl" if server_speed else None) as server:
        env = {**os.environ, **_rehearsal_env(home, server.url), "VISIT_SHARDS": str(shards), "OMP_WAIT_POLICY": "PASSIVE",
               "VISIT_LLM_CONCURRENCY": str(concurrency), "HF_HUB_OFFLINE": "1"}
        if mode == "whole":
            total = _command(["run", str(folder), *options], env, home / "run.log")
            return total, {}, server.stats()
        if mode == "daemon":
            if config:
                raise SystemExit("--mode daemon runs the product's defaults (no --lanes)")
            return run_daemon(folder, home, env), {}, server.stats()
        per_stage, before = progress["stage_processes"], progress["stand_in"]
        progress["invocations"] += 1

        def save() -> None:  # after each stage: a killed invocation keeps what it finished
            now = server.stats()
            progress["stand_in"] = {k: before.get(k, 0) + now[k] for k in ("replies", "output_tokens")}
            progress_file.write_text(json.dumps(progress, indent=1))

        groups = step_groups(env)[:first_stages]
        for group in groups:
            name = ", ".join(group)
            if name not in per_stage:  # else finished by an earlier invocation (--resume)
                started, code = time.time(), commit()  # the code the stage's process imports: at its start
                figures = _command(["run", str(folder), "--assets", ",".join(group), *options], env, home / "run.log")
                per_stage[name] = {**figures, "commit": code, "window": [started, time.time()]}
                save()
        save()
        served = {**server.stats(), **progress["stand_in"], "invocations": progress["invocations"]}
        per_stage = {n: per_stage[n] for n in map(", ".join, groups) if n in per_stage}  # not those beyond them
    total = {"wall_s": sum(v["wall_s"] for v in per_stage.values()), "cpu_s": sum(v["cpu_s"] for v in per_stage.values()),
             "peak_rss_mb": max(v["peak_rss_mb"] for v in per_stage.values())}
    return total, per_stage, served


def overhead(total: dict, per: dict, served: dict, windows: dict, log: Path) -> dict | None:
    """Wall time / the emulated server's busy time (its replies' tokens / its total rate): per step
    that sent LLM requests (a reply counts for the step running when it finished), over those steps
    (what a GPU waits on while the pipeline works), and over the whole graph (CPU stages included)."""
    if not served.get("busy_s"):
        return None
    replies = [(e["at"], e["tokens"]) for e in map(json.loads, log.read_text().splitlines()) if e.get("status") == 200]
    rate = served["total_tokens_per_s"]
    steps = {}
    for step in sorted(k[5:] for k, v in per.items() if k.startswith("step ") and v.get("llm_sent")):
        spans = windows[step]
        busy = sum(n for at, n in replies if any(a <= at <= b for a, b in spans)) / rate
        wall = sum(b - a for a, b in spans)
        steps[step] = {"wall_s": round(wall, 2), "busy_s": round(busy, 2), "ratio": round(wall / busy, 3) if busy else None}
    wall = sum(v["wall_s"] for v in steps.values())
    busy = sum(v["busy_s"] for v in steps.values())
    return {"server_busy_s": served["busy_s"], "steps": steps, "llm_steps_wall_s": round(wall, 1),
            "llm_steps_busy_s": round(busy, 1), "llm_steps_ratio": round(wall / busy, 3) if busy else None,
            "whole_graph_ratio": round(total["wall_s"] / served["busy_s"], 3)}


def stages(dagster_home: Path, stage_windows: list | None = None) -> tuple[dict, dict]:
    """Per asset: step wall time, rows, LLM figures; and the instance's runs and event rows. With
    `stage_windows` ([start, end] epoch seconds of each stage process that finished), only the runs that
    started inside one: an interrupted stage's runs (run again whole by --resume) are not counted."""
    per: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    windows: dict[str, list] = defaultdict(list)  # step -> (start, end) epoch seconds of each of its runs
    events = 0
    with open_instance(dagster_home) as instance:
        runs = []
        for run in instance.get_runs():
            logs = instance.all_logs(run.run_id)
            if stage_windows is not None and not (logs and any(a <= logs[0].timestamp <= b for a, b in stage_windows)):
                continue
            runs.append(run)
            events += len(logs)
            started = {}
            for entry in logs:
                ev = entry.dagster_event
                if ev is None:
                    continue
                if ev.event_type_value == "STEP_START":
                    started[ev.step_key] = entry.timestamp
                elif ev.event_type_value == "STEP_SUCCESS" and ev.step_key in started:
                    per[f"step {ev.step_key}"]["wall_s"] += entry.timestamp - started[ev.step_key]
                    windows[ev.step_key].append((started[ev.step_key], entry.timestamp))
                elif ev.event_type_value == "ASSET_MATERIALIZATION":
                    mat = ev.step_materialization_data.materialization
                    stats = per[mat.asset_key.to_user_string()]
                    stats["partitions"] += 1
                    meta = {k: v.value for k, v in mat.metadata.items()}
                    if isinstance(meta.get("llm_sent"), (int, float)):  # which steps kept the server busy
                        step = per[f"step {ev.step_key}"]
                        step["llm_sent"] = max(step["llm_sent"], meta["llm_sent"])
                    for src, dst in (("dagster/row_count", "rows"), ("llm_requests", "llm_requests"),
                                     ("llm_cache_hits", "llm_cache_hits"), ("llm_sent", "llm_sent")):
                        if isinstance(meta.get(src), (int, float)):
                            stats[dst] += meta[src]
    return {k: dict(v) for k, v in per.items()}, {"runs": len(runs), "event_log_rows": events, "step_windows": windows}


def measure(n: int, shards: int, mode: str, server_speed: dict | None, lanes: int | None = None,
            first_stages: int | None = None, resume: bool = False) -> dict:
    from visit_assets.defs.conversations.assets import GenerationConfig, lanes_for

    folder = make_dataset(n)
    home = OUT / f"home-{n}-{mode}{'-gpu' if server_speed else ''}{f'-lanes{lanes}' if lanes else ''}"
    config = {"generated_conversations": {"lanes": lanes}} if lanes else None
    total, processes, served = run_graph(folder, home, shards, mode, server_speed, config, first_stages, resume)
    windows = [v.get("window") for v in processes.values()]  # none from homes measured before they were kept
    per, dagster = stages(home / "dagster_home", windows if mode == "stages" and all(windows) else None)
    return {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(), "images": n,
            "shards": shards, "mode": mode, "server": server_speed or "zero latency",
            "lanes": lanes or lanes_for(GenerationConfig(), "openai"),
            "lanes_default": not lanes, "first_stages": first_stages, "dataset": json.loads((folder / "DONE").read_text()),
            "total": total, "stand_in": served,
            "overhead": overhead(total, per, served, dagster.pop("step_windows"), home / "stand_in.jsonl"),
            "stage_processes": processes, "dagster": dagster, "stages": per}


def _result_name(r: dict) -> str:
    gpu = "-gpu" if isinstance(r.get("server"), dict) else ""
    lanes = f"-lanes{r['lanes']}" if r.get("lanes_default") is False else ""
    first = f"-first{r['first_stages']}" if r.get("first_stages") else ""
    return f"coco_graph-{r['images']}-{r.get('mode', 'whole')}{gpu}{lanes}{first}-{r['date']}.json"


def render(results: list[dict]) -> str:
    lines = []
    for r in results:
        t, d, mode = r["total"], r["dagster"], r.get("mode", "whole")
        how = {"stages": "one `visit-assets run --assets <stage>` process per stage",
               "whole": "one `visit-assets run` process for the whole graph",
               "daemon": "dropped into the watched folder of `dagster dev`, run by its sensors "
                         f"(every {t.get('sensor_interval_s')} s, the default) through the daemon"}[mode]
        if r.get("first_stages"):
            how += f", the first {r['first_stages']} stages only"
        if r.get("stand_in", {}).get("invocations", 1) > 1:
            how += f", over {r['stand_in']['invocations']} invocations (`--resume`)"
        usage = f", {t['cpu_s']:.0f} s CPU, peak RSS {t['peak_rss_mb']:,.0f} MB" if "cpu_s" in t else ""
        lines += [f"**{r['images']:,} images, {r['shards']} shards, {how}** (bench/results/{_result_name(r)}; "
                  f"{r['machine']['cores']} cores): {t['wall_s']:.0f} s wall{usage}; {d['runs']} Dagster runs, "
                  f"{d['event_log_rows']:,} event-log rows.{_against_command_line(r, results)}", ""]
        if r.get("stage_processes"):
            lines += ["| stage (its process) | wall s | CPU s | peak RSS MB | wall s per 1k images |",
                      "|---|---|---|---|---|"]
            for group, v in r["stage_processes"].items():
                lines.append(f"| {group} | {v['wall_s']:.1f} | {v['cpu_s']:.1f} | {v['peak_rss_mb']:,.0f} | "
                             f"{1000 * v['wall_s'] / r['images']:.2f} |")
            if not r.get("first_stages") and r["images"] < COCO_IMAGES:
                hours = _linear_hours(r["stage_processes"], COCO_IMAGES / r["images"])
                lines += ["", f"Projected linearly to COCO's {COCO_IMAGES:,} images (**projected, not measured**): "
                          f"{hours:.1f} h for every stage but image_clusters, whose method changes above 10,000 "
                          "images (spectral-ann: its own scale curve is in the clustering section)."]
            elif r.get("first_stages"):
                lines += _rest_projected(r, results)
            if r.get("stand_in", {}).get("invocations", 1) > 1:
                lines += ["", "A stage stopped in an earlier invocation ran again whole when resumed; the LLM answers "
                          "it had already received came from the response cache (cache hits below), none was paid twice."]
            lines.append("")
        lines += ["| asset | partitions | step wall s | rows out | LLM requests | cache hits | sent |",
                  "|---|---|---|---|---|---|---|"]
        steps = {k[5:]: v for k, v in r["stages"].items() if k.startswith("step ")}
        for asset, s in sorted(((k, v) for k, v in r["stages"].items() if not k.startswith("step ")),
                               key=lambda kv: -steps.get(kv[0], {}).get("wall_s", 0)):
            wall = steps.get(asset, {}).get("wall_s")
            wall_text = "(made by another's step)" if wall is None else f"{wall:.1f}"
            lines.append(f"| {asset} | {s.get('partitions', 0):.0f} | {wall_text} | "
                         f"{s.get('rows', 0):,.0f} | {s.get('llm_requests', 0):,.0f} | {s.get('llm_cache_hits', 0):,.0f} | "
                         f"{s.get('llm_sent', 0):,.0f} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def _against_command_line(r: dict, results: list[dict]) -> str:
    """For a daemon run: its wall time against one `visit-assets run` of the same set and shards."""
    whole = [w for w in results if w.get("mode") == "whole" and w["images"] == r["images"] and w["shards"] == r["shards"]
             and not isinstance(w.get("server"), dict)]
    if r.get("mode") != "daemon" or not whole:
        return ""
    w = whole[-1]
    return (f" That is {r['total']['wall_s'] / w['total']['wall_s']:.2f}x the wall time of one `visit-assets run` on "
            f"the same set ({w['total']['wall_s']:.0f} s, bench/results/{_result_name(w)}); the runs "
            f"by sensor: {', '.join(f'{k} {v}' for k, v in sorted(r['total'].get('runs_by_sensor', {}).items()))}."
            + _daemon_projection(r, results))


def _daemon_projection(r: dict, results: list[dict]) -> str:
    """A daemon run projected to COCO's size: its ratio to the per-stage run of the same set, applied
    to the complete per-stage run at COCO's size (marked as a projection)."""
    def complete_stages(n: int) -> list[dict]:
        return [s for s in results if s.get("mode") == "stages" and s["images"] == n and not s.get("first_stages")
                and not isinstance(s.get("server"), dict)]

    same, coco = complete_stages(r["images"]), complete_stages(COCO_IMAGES)
    if r["images"] >= COCO_IMAGES or not same or not coco:
        return ""
    ratio = r["total"]["wall_s"] / same[-1]["total"]["wall_s"]
    hours = ratio * coco[-1]["total"]["wall_s"] / 3600
    return (f" Through the daemon at {COCO_IMAGES:,} images (**projected, not measured**: this run's "
            f"{ratio:.2f}x the per-stage run of the same set, bench/results/{_result_name(same[-1])}, applied to the "
            f"per-stage run at that size, bench/results/{_result_name(coco[-1])}): {hours:.1f} h, more than a "
            "working session of this 2-core machine, so not run; the per-stage run at that size is the measurement.")


def _linear_hours(stage_processes: dict, scale: float) -> float:
    """Hours of these stages at `scale` x the images, linearly: all but image_clusters, whose method
    changes above 10,000 images (its own scale curve is measured in the clustering section)."""
    return sum(v["wall_s"] for g, v in stage_processes.items() if g != "image_clusters") * scale / 3600


def _rest_projected(partial: dict, results: list[dict]) -> list[str]:
    """For a run of the first stages only: the stages it did not reach, projected linearly from the
    largest complete stages run (marked as a projection)."""
    complete = [r for r in results if r.get("mode") == "stages" and not r.get("first_stages")
                and r.get("stage_processes") and r["images"] < partial["images"]
                and r.get("server", "zero latency") == partial.get("server", "zero latency")]
    if not complete:
        return []
    ref = max(complete, key=lambda r: r["images"])
    rest = {g: v for g, v in ref["stage_processes"].items() if g not in partial["stage_processes"]}
    if not rest:
        return []
    scale = partial["images"] / ref["images"]
    hours = _linear_hours(rest, scale)
    return ["", f"Not yet run at this size: {', '.join(rest)}. Projected linearly from the {ref['images']:,}-image run's "
            f"stage times (bench/results/{_result_name(ref)}; **projected, not measured**): {hours:.1f} h more"
            + (" besides image_clusters, whose method changes above 10,000 images (spectral-ann: its own scale "
               "curve is in the clustering section)" if "image_clusters" in rest else "") + "."]


def render_overhead(results: list[dict]) -> str:
    lines = []
    for r in results:
        o, srv, t = r["overhead"], r["server"], r["total"]
        lanes = f"{r['lanes']} sampling lanes" if "lanes" in r else "the default sampling lanes"
        per_reply = f", {srv['tokens-per-s']} tokens/s per reply" if srv.get("tokens-per-s") else ""
        lines += [f"**{r['images']:,} images, {r['shards']} shards, {lanes}, one `visit-assets run`** "
                  f"(bench/results/{_result_name(r)}; {r['machine']['cores']} cores): the stand-in emulating one GPU "
                  f"server ({srv['total-tokens-per-s']:,} output tokens/s shared, up to {srv['max-concurrency']} "
                  f"requests at once{per_reply}), "
                  f"the product at concurrency {srv['max-concurrency']}: {r['stand_in']['replies']:,} replies, "
                  f"{r['stand_in']['output_tokens']:,} output tokens, server busy {o['server_busy_s']:.0f} s.", "",
                  "| step (LLM requests) | step wall s | server busy s | wall / busy |", "|---|---|---|---|"]
        for step, v in sorted(o["steps"].items(), key=lambda kv: -kv[1]["busy_s"]):
            ratio = f"{v['ratio']:.2f}" if v["ratio"] else "-"
            lines.append(f"| {step} | {v['wall_s']:.1f} | {v['busy_s']:.1f} | {ratio} |")
        lines += [f"| **every LLM step** | {o['llm_steps_wall_s']:.1f} | {o['llm_steps_busy_s']:.1f} | "
                  f"**{o['llm_steps_ratio']:.2f}** |",
                  f"| the whole graph (CPU stages too) | {t['wall_s']:.1f} | {o['server_busy_s']:.1f} | "
                  f"{o['whole_graph_ratio']:.2f} |", ""]
    return "\n".join(lines).rstrip()


def write_docs() -> None:
    newest = {}
    for path in sorted(RESULTS.glob("coco_graph-*.json")):
        r = json.loads(path.read_text())
        newest[(r["images"], r.get("mode", "whole"), bool(r.get("overhead")), r.get("lanes", 0),
                r.get("first_stages") or 0)] = r
    # a partial run is shown only while no run of the same kind, complete or partial, has got further
    furthest = {k[:4]: max(k2[4] for k2 in newest if k2[:4] == k[:4]) for k in newest}
    complete = {k[:4] for k in newest if k[4] == 0}
    plain = [newest[k] for k in sorted(newest)
             if not k[2] and (k[4] == 0 or (k[:4] not in complete and k[4] == furthest[k[:4]]))]
    write_section("coco_graph", render(plain), "The whole graph on a COCO-shaped dataset")
    emulated = [newest[k] for k in sorted(newest) if k[2]]
    if emulated:
        write_section("coco_graph_overhead", render_overhead(emulated), "Overhead against model time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="measure", choices=["measure", "dataset", "docs"])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--mode", choices=["stages", "whole", "daemon"], default="stages")
    parser.add_argument("--gpu", action="store_true", help="the stand-in emulates one GPU server (GPU_SERVER) instead "
                        "of answering at once, and the overhead ratio is measured against its busy time")
    parser.add_argument("--stream-tokens-per-s", type=float, default=0.0,
                        help="with --gpu: each reply's own decode speed (default 0: only the shared rate limits)")
    parser.add_argument("--first-stages", type=int, help="with --mode stages: only the first N stages (e.g. 3: seed "
                        "instructions, ingest and grouping: the catalog and UI benches at a size the whole graph "
                        "takes hours)")
    parser.add_argument("--resume", action="store_true", help="with --mode stages: keep the home of the last "
                        "invocation with these settings and run only the stages it did not finish (a graph too long "
                        "for one sitting, measured over several; a stage that was interrupted runs again whole)")
    parser.add_argument("--lanes", type=int, help="generated_conversations' sampling lanes (default: the product's)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if args.command == "dataset":
        print(make_dataset(args.images))
        return
    if args.command == "measure":
        if args.resume and (args.mode != "stages" or args.gpu):
            parser.error("--resume measures stages (--mode stages) without --gpu (its overhead needs one sitting)")
        speed = {**GPU_SERVER, **({"tokens-per-s": args.stream_tokens_per_s} if args.stream_tokens_per_s else {})} \
            if args.gpu else None
        result = measure(args.images, args.shards, args.mode, speed, args.lanes, args.first_stages, args.resume)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / _result_name(result)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(render([result]))
    if args.write_docs or args.command == "docs":
        write_docs()


if __name__ == "__main__":
    main()

"""The graph driven by the real daemon, as a user of the UI gets it (bench/coco_graph.py --mode daemon):
`dagster dev` (webserver + daemon) with the repo's dagster.yaml and its sensors on at their default
interval; the dataset folder is dropped into the watched folder (copied aside, then renamed, as `mv`
does); the folder sensor ingests it and `regenerate_downstream` runs the rest, wave by wave. Done
when the export exists, no run is queued, running or about to be retried, and `regenerate_downstream`
has ticked since with nothing left to run. Wall time is from the drop to the last run's end.

It runs in its own process (`run_daemon`): the graph it checks must be the one the daemon loads,
made under the same environment (the shard count is read when the definitions are imported).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
TIMEOUT_S = 4 * 3600
POLL_S = 5


def run_daemon(folder: Path, home: Path, env: dict[str, str]) -> dict:
    """Drop `folder` into `home`'s watched folder under `dagster dev`; the run's totals."""
    with open(home / "daemon-driver.log", "w") as log:
        proc = subprocess.run([sys.executable, __file__, str(folder), str(home)], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=log, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the daemon run failed; see {home / 'daemon-driver.log'}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _drive(folder: Path, home: Path, env: dict[str, str]) -> dict:
    import dagster as dg
    from dagster_dev import dagster_dev

    watched = Path(env["VISIT_DATASETS"])
    watched.mkdir(parents=True, exist_ok=True)
    aside = home / f".{folder.name}.partial"
    shutil.copytree(folder, aside)  # before the clock starts: a user's `mv` is instant
    with dagster_dev(Path(env["DAGSTER_HOME"]), home / "dagster-dev.log", env) as dev:
        instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
        t0 = time.time()
        os.rename(aside, watched / folder.name)
        while True:
            time.sleep(POLL_S)
            # the daemon's instance read afresh each poll, as a separate UI session would
            instance.dispose()
            instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
            failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
            # a run the daemon retried (run_retries) is judged by its retry
            if any(not r.is_complete_and_waiting_to_retry and "dagster/auto_retry_run_id" not in r.tags for r in failed):
                raise RuntimeError(f"{len(failed)} run(s) failed; see {dev.log}")
            if _finished(instance, folder.name):
                break
            if time.time() - t0 > TIMEOUT_S:
                raise RuntimeError(f"the daemon did not finish within {TIMEOUT_S} s; see {dev.log}")
        records = instance.get_run_records()
        last = max(r.end_time or 0 for r in records)
        by_sensor = Counter(r.dagster_run.tags.get("dagster/sensor_name", "(none)") for r in records)
        instance.dispose()
    return {"wall_s": last - t0, "sensor_interval_s": _sensor_interval(), "runs_by_sensor": dict(by_sensor)}


def _finished(instance, dataset: str) -> bool:
    """The export of `dataset` exists, no run is unfinished, and regenerate_downstream has since
    ticked with nothing to run: what a user watching the UI takes for done."""
    import dagster as dg
    from dagster._core.scheduler.instigation import TickStatus

    from visit_assets.defs.automation import unfinished_runs

    if not instance.get_materialized_partitions(dg.AssetKey("visit_export")) & {dataset} or unfinished_runs(instance):
        return False
    last_end = max(r.end_time or 0 for r in instance.get_run_records())
    [state] = [s for s in instance.all_instigator_state() if s.instigator_name == "regenerate_downstream"]
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5)
    return any(t.status == TickStatus.SKIPPED and t.timestamp > last_end for t in ticks)


def _sensor_interval() -> int:
    from visit_assets import settings

    return settings.sensor_interval_s()


if __name__ == "__main__":
    print(json.dumps(_drive(Path(sys.argv[1]), Path(sys.argv[2]), dict(os.environ))))

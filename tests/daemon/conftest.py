"""The real daemon, as users run it: `dagster dev` with the repo's dagster.yaml on a fresh instance,
the sensors on (their default), an empty watched datasets folder, and a fake OpenAI-compatible LLM
server (tests/fake_llm_server.py) that counts every request. Sensors tick every few seconds here
(VISIT_SENSOR_INTERVAL_S) instead of 30, so a whole regeneration fits in a test.

`Watch` reads the instance the daemon writes: materializations per asset partition, runs, sensor
ticks and backfills, and fails at once on any failed run, tick or backfill (a failure nobody sees
was how the stalled regeneration went unnoticed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.scheduler.instigation import TickStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers, whatever the import mode
from dagster_dev import DagsterDev, DagsterDevError, dagster_dev  # noqa: E402
from fake_llm_server import FakeLLMServer  # noqa: E402

from visit_assets.definitions import defs  # noqa: E402
from visit_assets.defs.automation import unfinished_runs  # noqa: E402
from visit_assets.defs.waves import is_regenerated  # noqa: E402
from visit_assets.lib.mminstruct.seeds import default_path as default_seeds_path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SENSOR_INTERVAL_S = 3
SERVED = "fake-model"


def automated_assets() -> set[str]:
    """The assets regenerate_downstream keeps up to date (tagged so), and the ingest the folder sensor runs."""
    graph = defs.resolve_asset_graph()
    return {k.to_user_string() for k in graph.materializable_asset_keys if is_regenerated(graph.get(k))} | {
        "source_records"}


def partitioned_by_shard(asset: str) -> bool:
    partitions = defs.resolve_asset_graph().get(dg.AssetKey(asset)).partitions_def
    return isinstance(partitions, dg.MultiPartitionsDefinition)


@dataclass
class Watch:
    dev: DagsterDev
    visit_home: Path
    llm: FakeLLMServer
    seeds: Path
    seen_ticks: set = field(default_factory=set)

    @property
    def instance(self) -> dg.DagsterInstance:
        return self.dev.instance

    def materializations(self, asset: str) -> Counter[str | None]:
        """Partition key -> number of materializations (all time)."""
        records = self.instance.fetch_materializations(dg.AssetKey(asset), limit=10_000).records
        return Counter(r.event_log_entry.dagster_event.partition for r in records)

    def failures(self) -> list[str]:
        out = []
        for run in self.instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])):
            out.append(f"run {run.run_id} ({run.job_name}, {run.tags.get('dagster/partition')}) failed")
        for state in self.instance.all_instigator_state():
            for tick in self.instance.get_ticks(state.instigator_origin_id, state.selector_id,
                                                statuses=[TickStatus.FAILURE]):
                out.append(f"{state.instigator_name} tick failed: {tick.error.message if tick.error else '?'}")
        for backfill in self.instance.get_backfills():
            if backfill.status in (BulkActionStatus.FAILED, BulkActionStatus.CANCELED):
                out.append(f"backfill {backfill.backfill_id} {backfill.status.value}: {backfill.error}")
        return out

    def cli(self, *args: str) -> None:
        """A `dagster` command against this instance and workspace, as a user would type it."""
        proc = subprocess.run([sys.executable, "-m", "dagster", *args, "-w", "workspace.yaml"], cwd=REPO,
                              env={**os.environ, "DAGSTER_HOME": str(self.dev.dagster_home)},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    def in_progress_runs(self) -> list:
        """Queued or running, and failed runs about to be retried."""
        return unfinished_runs(self.instance)

    def wait(self, what: str, done: Callable[[], bool], timeout: float, allow_failures: bool = False) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not allow_failures and (failed := self.failures()):
                pytest.fail(f"while waiting for {what}: " + "; ".join(failed[:5]) + f"\n{self.dev.log_tail(3000)}")
            if done():
                return
            if time.monotonic() > deadline:
                runs = [(r.job_name, r.tags.get("dagster/partition"), r.status.value) for r in self.in_progress_runs()]
                pytest.fail(f"{what}: not within {timeout:.0f} s; in progress: {runs}"
                            f"\n{self.dev.log_tail(3000)}")
            time.sleep(2)

    def settle(self, timeout: float, allow_failures: bool = False) -> None:
        """Until no run is queued or running for several sensor intervals (automation has nothing left)."""
        quiet_since = [time.monotonic()]

        def quiet() -> bool:
            if self.in_progress_runs():
                quiet_since[0] = time.monotonic()
            return time.monotonic() - quiet_since[0] > 4 * SENSOR_INTERVAL_S + 5

        self.wait("the daemon to settle", quiet, timeout, allow_failures)


def drop_in(source: Path, target: Path) -> None:
    """Put a folder into the watched folder at once (copied aside, then renamed), as `mv` would:
    the folder sensor never sees it half copied."""
    aside = target.parent.parent / f".{target.name}.partial"
    shutil.copytree(source, aside)
    os.rename(aside, target)


def replace_text(path: Path, text: str) -> None:
    """Rewrite a watched file at once (written aside, then renamed over it)."""
    aside = path.with_name(f".{path.name}.partial")
    aside.write_text(text)
    os.replace(aside, path)


@pytest.fixture
def daemon(tmp_path, monkeypatch) -> Watch:
    """`dagster dev` with sensors on and an empty watched folder; yields a Watch."""
    llm = FakeLLMServer()
    visit_home = tmp_path / "visit_home"
    (visit_home / "datasets").mkdir(parents=True)
    seeds = tmp_path / "seed_instructions.yaml"
    seeds.write_text(default_seeds_path().read_text())
    env_vars = {"VISIT_HOME": str(visit_home), "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
                "VISIT_LLM_BACKEND": "openai", "VISIT_LLM_BASE_URLS": llm.url, "VISIT_LLM_SERVED_MODEL": SERVED,
                "VISIT_LLM_MAX_RETRIES": "1", "VISIT_LLM_CONCURRENCY": "1",
                "VISIT_SENSOR_INTERVAL_S": str(SENSOR_INTERVAL_S),
                # two shards: half the runs of the default four, the same code paths
                "VISIT_SHARDS": "2", "VISIT_SEEDS_FILE": str(seeds), "VISIT_REINGEST_CRON": "* * * * *"}
    for name, value in env_vars.items():
        monkeypatch.setenv(name, value)
    for name in ("VISIT_STORE", "VISIT_DATASETS"):
        monkeypatch.delenv(name, raising=False)
    try:
        with dagster_dev(tmp_path / "dagster_home", tmp_path / "dagster-dev.log", dict(os.environ)) as dev:
            yield Watch(dev=dev, visit_home=visit_home, llm=llm, seeds=seeds)
    except DagsterDevError as e:
        pytest.fail(str(e))
    finally:
        llm.close()

"""Regeneration: `regenerate_downstream` brings each dataset's derived assets up to date, one wave at
a time (waves.py: what a wave is, what is missing or stale). For each dataset with no unfinished
run, it requests the next wave's runs; the next wave waits until that one has finished, so no
dataset-level asset reads shards still being regenerated, and a new dataset version makes one new
export. A parent re-materialized to the same data version (a touched, unchanged file) makes nothing
stale: nothing runs.

Why not Dagster's declarative automation (`AutomationCondition.eager` + the automation sensor),
measured through the real daemon on Dagster 1.13 (tests/daemon): its backfills over these dataset
and dataset x shard partitions failed in the backfill daemon ("Unable to determine root partitions
for backfill"), and its runs cannot be ordered across partitions definitions: a dataset-level asset
ran before the shards it reads and again after them, and a parent updated inside a child's own run
triggered the child once more. Staleness (`waves.Records.status`) is Dagster's own notion, read from
the materializations' data and code version tags, not through the internal
`CachingStaleStatusResolver`, which is not public API.

A request that fails is not retried by the sensor until something it reads or made changes (its run
key is made of those materializations); a run whose process died is retried by the daemon
(`run_retries` in dagster.yaml). Dagster 1.13 can miss that retry: its retry daemon reads the
RUN_FAILURE event, which is stored before the run's status and its `will_retry` tag, and a read in
between finds the run "not failed" and moves past it for good (seen under load with SQLite storage).
Such a run, still "waiting to retry" `RETRY_GRACE_S` after it ended, stops holding its dataset back
and this sensor re-runs its assets and partition once (run key `retry-of:<run id>`): the response
cache makes the re-run send the LLM nothing already answered.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

from .. import settings
from .catalog.assets import CATALOG_ASSET, catalog_requests
from .partitions import DATASET_PARTITIONS
from .resources import StoreResource
from .waves import REGENERATED_TAG, REGENERATED_VALUE, Records, WaveRequest, plan

RETRY_GRACE_S = 120.0  # Dagster's retry daemon reads failures every few seconds: later than this, it missed one
RETRY_OF_TAG = "visit/retry_of"
SENSOR_NAME = "regenerate_downstream"


def _waiting_to_retry(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    failed = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=100)
    return [r for r in failed if r.dagster_run.is_complete_and_waiting_to_retry]


def _missed(record: dg.RunRecord, now: float) -> bool:
    return record.end_time is not None and now - record.end_time > RETRY_GRACE_S


def unfinished_runs(instance: dg.DagsterInstance, now: float | None = None) -> list[dg.DagsterRun]:
    """Queued, starting, running or being cancelled (Dagster's IN_PROGRESS_RUN_STATUSES leaves out
    queued runs), and failed runs the daemon is about to retry (not those whose retry it missed)."""
    now = time.time() if now is None else now
    runs = instance.get_runs(dg.RunsFilter(statuses=list(NOT_FINISHED_STATUSES)))
    return [*runs, *(r.dagster_run for r in _waiting_to_retry(instance) if not _missed(r, now))]


def missed_retry_requests(instance: dg.DagsterInstance, now: float | None = None) -> list[dg.RunRequest]:
    """Once per failed run of this sensor whose automatic retry never came: the same assets and
    partition again (not for a run that is itself such a re-run: one second chance, as max_retries)."""
    now = time.time() if now is None else now
    out = []
    for record in _waiting_to_retry(instance):
        run = record.dagster_run
        if (_missed(record, now) and run.asset_selection and RETRY_OF_TAG not in run.tags
                and run.tags.get("dagster/sensor_name") == SENSOR_NAME):
            out.append(dg.RunRequest(run_key=f"retry-of:{run.run_id}", partition_key=run.tags.get("dagster/partition"),
                                     asset_selection=sorted(run.asset_selection, key=lambda k: k.to_user_string()),
                                     tags={RETRY_OF_TAG: run.run_id, "visit/why": "its automatic retry never came"}))
    return out


def busy_datasets(runs: Sequence[dg.DagsterRun], datasets: Sequence[str]) -> set[str]:
    """Datasets with one of these runs; an unpartitioned run (the seeds) holds back every dataset."""
    busy = set()
    for run in runs:
        partition = run.tags.get("dagster/partition")
        if partition is None:
            return set(datasets)
        busy.add(run.tags.get("dagster/partition/dataset", partition))
    return busy


def run_key(records: Records, request: WaveRequest) -> str:
    """Same state, same key: Dagster then skips the request, so a failed run is not retried every
    tick, only once something it reads, or has made, has changed (a reverted code version or a
    wiped partition asks again; a failed run, which made nothing, does not)."""
    graph = records.graph
    parents = {p for k in request.assets for p in graph.get(k).parent_keys}
    state = [(key.to_user_string(), graph.get(key).code_version, records.latest(key))
             for key in sorted(parents | set(request.assets), key=lambda k: k.to_user_string())]
    digest = hashlib.sha256(repr((request.partition_key, state)).encode()).hexdigest()[:16]
    return f"{records.dataset}:wave{request.wave}:{request.partition_key}:{digest}"


def requests_for(instance: dg.DagsterInstance, graph, datasets: Sequence[str]) -> list[dg.RunRequest]:
    busy = busy_datasets(unfinished_runs(instance), datasets)
    out = []
    for dataset in datasets:
        if dataset in busy:
            continue
        records = Records(instance, graph, dataset)
        out += [dg.RunRequest(run_key=run_key(records, request), partition_key=request.partition_key,
                              asset_selection=list(request.assets),
                              tags={"visit/wave": str(request.wave), "visit/why": request.why})
                for request in plan(records)]
    return out


@dg.sensor(minimum_interval_seconds=settings.sensor_interval_s(), default_status=dg.DefaultSensorStatus.RUNNING,
           asset_selection=dg.AssetSelection.tag(REGENERATED_TAG, REGENERATED_VALUE)
           | dg.AssetSelection.assets(CATALOG_ASSET))
def regenerate_downstream(context: dg.SensorEvaluationContext, store: StoreResource) -> dg.SensorResult:
    """Runs the next wave of missing or stale partitions of each dataset (see this module), and
    rebuilds the DuckDB catalog when nothing else is left to run and its views would change."""
    assert context.repository_def is not None  # a sensor runs inside its code location
    graph = context.repository_def.asset_graph
    datasets = context.instance.get_dynamic_partitions(DATASET_PARTITIONS)
    requests = missed_retry_requests(context.instance) + requests_for(context.instance, graph, datasets)
    if not requests and not unfinished_runs(context.instance):  # a quiet store: once, not once per wave
        requests = catalog_requests(context.instance, store)
    return dg.SensorResult(run_requests=requests)

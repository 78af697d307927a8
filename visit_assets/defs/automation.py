"""Regeneration: `regenerate_downstream` brings each dataset's derived assets up to date, one wave at
a time.

A wave is a set of assets sharing one partitions definition whose parents are in it or in earlier
waves (`waves()`; `make sample` runs the same waves, runner.py): here the per-shard stages up to
the instructions, the dataset-level clusters and imports, the per-shard conversation stages, then
the dataset-level scores, selection and export. For a dataset with no run queued or running, the
sensor takes the first wave holding a partition that is missing (never made: it and what follows
it in the wave run together) or stale (`status()`: a parent now has another data version than the
one it last read, or the asset a new code version) and requests one run per partition key. The
next wave waits until that one has finished, so no dataset-level asset reads shards still being
regenerated, and a new dataset version makes one new export. A parent re-materialized to the same
data version (a touched, unchanged file) makes nothing stale: nothing runs.

Why not Dagster's declarative automation (`AutomationCondition.eager` + the automation sensor),
measured through the real daemon on Dagster 1.13 (tests/daemon): its backfills over these dataset
and dataset x shard partitions failed in the backfill daemon ("Unable to determine root partitions
for backfill"), and its runs cannot be ordered across partitions definitions: a dataset-level asset
ran before the shards it reads and again after them, and a parent updated inside a child's own run
triggered the child once more. `status()` applies Dagster's own notion of stale (the UI's) to the
same records (the data and code version tags of each materialization), read with one query per
asset instead of the internal `CachingStaleStatusResolver`, which is not public API.

A request that fails is not retried by the sensor until something upstream changes (its run key is
made of the upstream materializations); a run whose process died is retried by the daemon
(`run_retries` in dagster.yaml).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES

from .. import settings
from .partitions import dataset_partitions, image_partitions, shard_partitions

# Assets the sensor keeps up to date carry this tag; the others (pairwise_evaluation) run on demand.
REGENERATED = {"visit/regenerated": "on-change"}


def is_regenerated(node) -> bool:
    return node.tags.get("visit/regenerated") == REGENERATED["visit/regenerated"]


def waves(graph) -> list[tuple[object, list[dg.AssetKey]]]:
    """The materializable assets in waves: an asset joins its parents' wave when it shares their
    partitions definition, else the wave after theirs. Waves are listed in the order they can run,
    each with its partitions definition and its assets in dependency order."""
    level: dict[dg.AssetKey, int] = {}
    groups: dict[tuple[int, int], list[dg.AssetKey]] = {}
    defs_seen: list[object] = []
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        parents = [p for p in node.parent_keys if p in level]
        level[key] = max((level[p] + (graph.get(p).partitions_def != node.partitions_def) for p in parents),
                         default=0)
        if node.partitions_def not in defs_seen:
            defs_seen.append(node.partitions_def)
        groups.setdefault((level[key], defs_seen.index(node.partitions_def)), []).append(key)
    return [(defs_seen[d], keys) for (_, d), keys in sorted(groups.items())]


def partition_keys(partitions_def, dataset: str) -> list[str | None]:
    """The partitions of `dataset` in a partitions definition (None: unpartitioned)."""
    if partitions_def is None:
        return [None]
    if partitions_def == dataset_partitions:
        return [dataset]
    if partitions_def == image_partitions:
        return [dg.MultiPartitionKey({"dataset": dataset, "shard": s}) for s in shard_partitions.get_partition_keys()]
    raise ValueError(f"unsupported partitions definition {partitions_def}")


@dataclass(frozen=True)
class WaveRequest:
    wave: int
    partition_key: str | None
    assets: tuple[dg.AssetKey, ...]
    why: str  # "missing" / "stale"


HISTORY = 10_000  # materializations read per asset and tick; an older input counts as changed


def _history(instance: dg.DagsterInstance, key: dg.AssetKey, pks: list) -> dict:
    """Partition -> [(timestamp, data version, code version, run id)] of its materializations, newest first."""
    filters = dg.AssetRecordsFilter(asset_key=key, asset_partitions=None if pks == [None] else [str(k) for k in pks])
    out: dict = {}
    for record in instance.fetch_materializations(filters, limit=HISTORY).records:
        tags = record.asset_materialization.tags or {}
        out.setdefault(record.partition_key, []).append(
            (record.timestamp, tags.get("dagster/data_version"), tags.get("dagster/code_version"), record.run_id))
    return out


def _parent_partitions(parent_def, child_def, pk, dataset: str) -> list:
    if parent_def is None:
        return [None]
    return [pk] if parent_def == child_def else partition_keys(parent_def, dataset)


def status(graph, key: dg.AssetKey, pk, dataset: str, history, run_start) -> str:
    """"missing", "stale" or "fresh": Dagster's notion of stale (the UI's), from the same records.
    Stale: a new code version, or a parent partition whose current data version differs from the
    one it had when the run that made this partition was created (a parent made later in that same run,
    upstream in its wave, was read after it was made)."""
    own = history(key).get(None if pk is None else str(pk))
    if not own:
        return "missing"
    _, _, own_code, own_run = own[0]
    node = graph.get(key)
    if node.code_version and own_code != node.code_version:
        return "stale"
    started = run_start(own_run)
    for parent in node.parent_keys:
        parent_def = graph.get(parent).partitions_def
        for ppk in _parent_partitions(parent_def, node.partitions_def, pk, dataset):
            versions = history(parent).get(None if ppk is None else str(ppk))
            if not versions or versions[0][3] == own_run or versions[0][0] < started:
                continue  # unchanged since the run was created, or made by that run before this step
            # what it read: made before its run was created, or by its run (before this step)
            read = next((dv for made, dv, _, run in versions if made < started or run == own_run), None)
            if read is None or read != versions[0][1]:
                return "stale"
    return "fresh"


def _in_wave_descendants(graph, keys: Iterable[dg.AssetKey], wave: set[dg.AssetKey]) -> set[dg.AssetKey]:
    out, todo = set(keys), list(keys)
    while todo:
        for child in graph.get(todo.pop()).child_keys:
            if child in wave and child not in out:
                out.add(child)
                todo.append(child)
    return out


def plan(instance: dg.DagsterInstance, graph, dataset: str) -> list[WaveRequest]:
    """What to run next for `dataset`: the first wave with a missing or stale partition, as one
    request per partition key (empty when everything regenerated is up to date)."""
    cache: dict = {}
    starts: dict[str, float] = {}

    def history(key: dg.AssetKey) -> dict:
        if key not in cache:
            cache[key] = _history(instance, key, partition_keys(graph.get(key).partitions_def, dataset))
        return cache[key]

    def run_start(run_id: str) -> float:
        """When the run was created: what was made before could be what it read (storage ids are
        per run file in SQLite storage, so times, not ids, order events of different runs)."""
        if run_id not in starts:
            record = instance.get_run_record_by_id(run_id)
            starts[run_id] = record.create_timestamp.timestamp() if record else 0.0
        return starts[run_id]

    for index, (partitions_def, keys) in enumerate(waves(graph)):
        keys = [k for k in keys if is_regenerated(graph.get(k))]
        requests = []
        for pk in partition_keys(partitions_def, dataset) if keys else []:
            state = {k: status(graph, k, pk, dataset, history, run_start) for k in keys}
            missing = {k for k, s in state.items() if s == "missing"}
            stale = {k for k, s in state.items() if s == "stale"}
            # Missing: the rest of the wave follows in the same run. Stale: only what is stale now;
            # its children run on a later tick if (and only where) its data really changed.
            selected = _in_wave_descendants(graph, missing, set(keys)) | stale
            selected -= _in_wave_descendants(graph, _without_inputs(graph, selected, pk, dataset, history), selected)
            if selected:
                requests.append(WaveRequest(index, pk, _whole_assets(graph, selected),
                                            "missing" if missing else "stale"))
        if requests:
            return requests
    return []


def _without_inputs(graph, keys: set[dg.AssetKey], pk, dataset: str, history) -> set[dg.AssetKey]:
    """Those of `keys` a parent partition of which, made outside the run, does not exist yet (the
    ingest or the seeds have not run): they wait, with what follows them."""
    blocked = set()
    for key in keys:
        node = graph.get(key)
        for parent in node.parent_keys - keys:
            made = history(parent)
            wanted = _parent_partitions(graph.get(parent).partitions_def, node.partitions_def, pk, dataset)
            if not all(made.get(None if ppk is None else str(ppk)) for ppk in wanted):
                blocked.add(key)
    return blocked


def _whole_assets(graph, keys: set[dg.AssetKey]) -> tuple[dg.AssetKey, ...]:
    """A multi-asset runs whole (its outputs are written together)."""
    out = set(keys)
    for key in keys:
        out |= set(graph.get(key).execution_set_asset_keys)
    return tuple(sorted(out, key=lambda k: k.to_user_string()))


# Queued, starting, running or being cancelled (Dagster's IN_PROGRESS_RUN_STATUSES leaves out queued runs).
UNFINISHED = list(NOT_FINISHED_STATUSES)


def unfinished_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Runs not finished, and failed runs the daemon is about to retry."""
    runs = instance.get_runs(dg.RunsFilter(statuses=UNFINISHED))
    failed = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]), limit=100)
    return runs + [r for r in failed if r.is_complete_and_waiting_to_retry]


def _busy(instance: dg.DagsterInstance, dataset: str) -> bool:
    """A run of this dataset (or an unpartitioned one, e.g. the seeds) is queued or running."""
    for run in unfinished_runs(instance):
        partition = run.tags.get("dagster/partition")
        if partition is None or partition == dataset or run.tags.get("dagster/partition/dataset") == dataset:
            return True
    return False


def run_key(instance: dg.DagsterInstance, graph, dataset: str, request: WaveRequest) -> str:
    """Same state, same key: Dagster then skips the request, so a failed run is not retried every
    tick, only once something it reads (or has made) has changed."""
    parents = {p for k in request.assets for p in graph.get(k).parent_keys} - set(request.assets)
    # the parents' latest materializations, and the requested assets' own (a reverted code version
    # or a wiped partition asks again; a failed run, which made nothing, does not)
    state = [(key.to_user_string(), _latest_ids(instance, key, dataset))
             for key in sorted(parents | set(request.assets), key=lambda k: k.to_user_string())]
    versions = [(k.to_user_string(), graph.get(k).code_version) for k in request.assets]
    digest = hashlib.sha256(repr((request.partition_key, versions, state)).encode()).hexdigest()[:16]
    return f"{dataset}:wave{request.wave}:{request.partition_key}:{digest}"


def _latest_ids(instance: dg.DagsterInstance, key: dg.AssetKey, dataset: str) -> list:
    """Storage ids of the latest materialization of each of the dataset's partitions (or the asset's)."""
    by_partition = instance.event_log_storage.get_latest_storage_id_by_partition(
        key, DagsterEventType.ASSET_MATERIALIZATION)
    ids = sorted((p, i) for p, i in by_partition.items() if p == dataset or p.startswith(f"{dataset}|"))
    if not by_partition:  # unpartitioned
        records = instance.fetch_materializations(key, limit=1).records
        ids = [(None, records[0].storage_id)] if records else []
    return ids


def requests_for(instance: dg.DagsterInstance, graph, datasets: Sequence[str]) -> list[dg.RunRequest]:
    out = []
    for dataset in datasets:
        if _busy(instance, dataset):
            continue
        for request in plan(instance, graph, dataset):
            out.append(dg.RunRequest(
                run_key=run_key(instance, graph, dataset, request), partition_key=request.partition_key,
                asset_selection=list(request.assets),
                tags={"visit/wave": str(request.wave), "visit/why": request.why}))
    return out


@dg.sensor(minimum_interval_seconds=settings.sensor_interval_s(), default_status=dg.DefaultSensorStatus.RUNNING,
           asset_selection=dg.AssetSelection.tag("visit/regenerated", "on-change"))
def regenerate_downstream(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Runs the next wave of missing or stale partitions of each dataset (see this module)."""
    graph = context.repository_def.asset_graph
    datasets = context.instance.get_dynamic_partitions(dataset_partitions.name)
    return dg.SensorResult(run_requests=requests_for(context.instance, graph, datasets))

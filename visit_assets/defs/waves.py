"""Waves, and what each dataset needs next: the planning behind `regenerate_downstream`
(automation.py) and `runner.regenerate`; `make sample` runs the same waves (runner.run_dataset).

A wave is a set of assets sharing one partitions definition whose parents are in it or in earlier
waves: here the per-shard stages up to the instructions, the dataset-level clusters and imports, the
per-shard conversation stages, then the dataset-level scores, selection and export. `plan()` takes
the first wave holding a partition that is missing (it and what follows it in the wave run
together) or stale (`Records.status`), as one request per partition key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg

from .partitions import dataset_partitions, image_partitions, shard_partitions

# Assets kept up to date by regenerate_downstream carry this tag; the others (pairwise_evaluation)
# run on demand.
REGENERATED_TAG, REGENERATED_VALUE = "visit/regenerated", "on-change"
REGENERATED = {REGENERATED_TAG: REGENERATED_VALUE}
HISTORY = 10_000  # materializations read per asset and tick; an older input counts as changed


def is_regenerated(node) -> bool:
    return node.tags.get(REGENERATED_TAG) == REGENERATED_VALUE


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


class Records:
    """One dataset's materialization records, each asset read once per evaluation (one query)."""

    def __init__(self, instance: dg.DagsterInstance, graph, dataset: str):
        self.instance, self.graph, self.dataset = instance, graph, dataset
        self._history: dict[dg.AssetKey, dict] = {}
        self._created: dict[str, float] = {}

    def partitions(self, key: dg.AssetKey) -> dict:
        """Partition -> [(time, data version, code version, run id)] of its materializations, newest first."""
        if key not in self._history:
            pks = partition_keys(self.graph.get(key).partitions_def, self.dataset)
            filters = dg.AssetRecordsFilter(asset_key=key, asset_partitions=None if pks == [None] else list(map(str, pks)))
            by_partition: dict = {}
            for record in self.instance.fetch_materializations(filters, limit=HISTORY).records:
                tags = (record.asset_materialization and record.asset_materialization.tags) or {}
                by_partition.setdefault(record.partition_key, []).append(
                    (record.timestamp, tags.get("dagster/data_version"), tags.get("dagster/code_version"),
                     record.run_id))
            self._history[key] = by_partition
        return self._history[key]

    def history(self, key: dg.AssetKey, pk) -> list[tuple[float, str | None, str | None, str]]:
        return self.partitions(key).get(None if pk is None else str(pk), [])

    def created(self, run_id: str) -> float:
        """When a run was created: what was made before could be what it read (times, not storage
        ids, order events of different runs: SQLite storage numbers each run's events apart)."""
        if run_id not in self._created:
            record = self.instance.get_run_record_by_id(run_id)
            self._created[run_id] = record.create_timestamp.timestamp() if record else 0.0
        return self._created[run_id]

    def parent_partitions(self, parent: dg.AssetKey, child: dg.AssetKey, pk) -> list:
        parent_def, child_def = self.graph.get(parent).partitions_def, self.graph.get(child).partitions_def
        if parent_def is None:
            return [None]
        return [pk] if parent_def == child_def else partition_keys(parent_def, self.dataset)

    def status(self, key: dg.AssetKey, pk) -> str:
        """"missing", "stale" or "fresh": Dagster's notion of stale (the UI's), from the data and code
        version tags of the materializations. Stale: a new code version, or a parent partition whose
        data version now differs from the one it had when the run that made this partition was
        created (a parent made earlier in that same run, upstream in its wave, was what it read)."""
        own = self.history(key, pk)
        if not own:
            return "missing"
        _, _, own_code, own_run = own[0]
        code_version = self.graph.get(key).code_version
        if code_version and own_code != code_version:
            return "stale"
        created = self.created(own_run)
        for parent in self.graph.get(key).parent_keys:
            for ppk in self.parent_partitions(parent, key, pk):
                versions = self.history(parent, ppk)
                if not versions or versions[0][3] == own_run or versions[0][0] < created:
                    continue  # unchanged since the run was created, or made by that run before this step
                read = next((dv for made, dv, _, run in versions if made < created or run == own_run), None)
                if read is None or read != versions[0][1]:
                    return "stale"
        return "fresh"

    def without_inputs(self, keys: set[dg.AssetKey], pk) -> set[dg.AssetKey]:
        """Those of `keys` a parent partition of which, made outside the run, does not exist yet (the
        ingest or the seeds have not run)."""
        return {key for key in keys for parent in self.graph.get(key).parent_keys - keys
                if not all(self.history(parent, ppk) for ppk in self.parent_partitions(parent, key, pk))}

    def latest(self, key: dg.AssetKey) -> list:
        """(partition, time) of the latest materialization of each of the dataset's partitions."""
        return sorted((str(pk), versions[0][0]) for pk, versions in self.partitions(key).items())


def _in_wave_descendants(graph, keys: Iterable[dg.AssetKey], wave: set[dg.AssetKey]) -> set[dg.AssetKey]:
    out, todo = set(keys), list(keys)
    while todo:
        for child in graph.get(todo.pop()).child_keys:
            if child in wave and child not in out:
                out.add(child)
                todo.append(child)
    return out


def _whole_assets(graph, keys: set[dg.AssetKey]) -> tuple[dg.AssetKey, ...]:
    """A multi-asset runs whole (its outputs are written together)."""
    out = set(keys)
    for key in keys:
        out |= set(graph.get(key).execution_set_asset_keys)
    return tuple(sorted(out, key=lambda k: k.to_user_string()))


def plan(records: Records) -> list[WaveRequest]:
    """What to run next for the records' dataset: the first wave with a missing or stale partition,
    one request per partition key (empty when everything regenerated is up to date)."""
    graph = records.graph
    for index, (partitions_def, keys) in enumerate(waves(graph)):
        keys = [k for k in keys if is_regenerated(graph.get(k))]
        requests = []
        for pk in partition_keys(partitions_def, records.dataset) if keys else []:
            state = {k: records.status(k, pk) for k in keys}
            missing = {k for k, s in state.items() if s == "missing"}
            stale = {k for k, s in state.items() if s == "stale"}
            # Missing: the rest of the wave follows in the same run. Stale: only what is stale now;
            # its children run on a later tick if (and only where) its data really changed. Neither
            # runs before the inputs made outside the run exist.
            selected = _in_wave_descendants(graph, missing, set(keys)) | stale
            selected -= _in_wave_descendants(graph, records.without_inputs(selected, pk), selected)
            if selected:
                requests.append(WaveRequest(index, pk, _whole_assets(graph, selected),
                                            "missing" if missing else "stale"))
        if requests:
            return requests
    return []

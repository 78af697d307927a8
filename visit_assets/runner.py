"""Run the whole asset graph for one dataset, in process, recording into a Dagster instance.

Assets are taken in dependency order and batched by partitions definition: each batch runs as
one Dagster run per partition key (the dataset, or each dataset|shard), exactly as a UI backfill
would, so the UI shows these runs and their metadata afterwards.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import dagster as dg

from .defs.partitions import dataset_partitions, image_partitions, shard_partitions


def _partition_keys(partitions_def, dataset: str) -> list[str | None]:
    if partitions_def is None:
        return [None]
    if partitions_def == dataset_partitions:
        return [dataset]
    if partitions_def == image_partitions:
        return [dg.MultiPartitionKey({"dataset": dataset, "shard": s}) for s in shard_partitions.get_partition_keys()]
    raise ValueError(f"unsupported partitions definition {partitions_def}")


def batches(defs: dg.Definitions) -> list[tuple[object, list[dg.AssetKey]]]:
    """Consecutive assets (in dependency order) that share a partitions definition."""
    graph = defs.resolve_asset_graph()
    out: list[tuple[object, list[dg.AssetKey]]] = []
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        if out and out[-1][0] == node.partitions_def:
            out[-1][1].append(key)
        else:
            out.append((node.partitions_def, [key]))
    return out


HOST_TAG, PID_TAG = "visit/host", "visit/pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_runs(instance: dg.DagsterInstance, log: Callable[[str], None] = print) -> int:
    """Mark runs of this host whose process is gone (kill -9, a crash) as failed and free their
    pool slots: otherwise a dead run keeps its `gpu` slot and the next run waits for ever."""
    started = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED],
                                                      tags={HOST_TAG: socket.gethostname()}))
    dead = [r for r in started if r.tags.get(PID_TAG, "").isdigit() and not _alive(int(r.tags[PID_TAG]))]
    for run in dead:
        instance.report_run_failed(run, message=f"the process running it (pid {run.tags[PID_TAG]}) is gone")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log(f"run {run.run_id} was left STARTED by a process that died: marked failed, its pool slots freed")
    return len(dead)


def _failure(result) -> str:
    """The innermost error of the failed step: what a user needs, not "Steps failed: [...]"."""
    steps = [e for e in result.all_events if e.is_step_failure]
    if not steps:
        failures = [e.message for e in result.all_events if e.is_failure]
        return failures[-1] if failures else "see the UI"
    event = steps[-1]
    error = event.step_failure_data.error
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        return event.message
    message = error.message.strip()  # usually "module.Class: text" already
    return f"step {event.step_key}: {message if error.cls_name in message else f'{error.cls_name}: {message}'}"


def run_dataset(defs: dg.Definitions, dataset: str, instance: dg.DagsterInstance, run_config: dict | None = None,
                op_config: dict[str, dict] | None = None, only: list[str] | None = None,
                log: Callable[[str], None] = print) -> None:
    """Materialize every asset (or those named in `only`) for `dataset`, upstream first.

    `op_config` maps an op (asset) name to its config; each run gets only its own ops' entries.
    """
    instance.add_dynamic_partitions(dataset_partitions.name, [dataset])
    release_dead_runs(instance, log)
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    job = defs.resolve_implicit_global_asset_job_def()
    for partitions_def, keys in batches(defs):
        keys = [k for k in keys if only is None or k.to_user_string() in only]
        if not keys:
            continue
        for partition_key in _partition_keys(partitions_def, dataset):
            log(f"materializing {', '.join(k.to_user_string() for k in keys)} [{partition_key or '-'}]")
            names = {k.to_user_string() for k in keys}
            ops = {op: {"config": cfg} for op, cfg in (op_config or {}).items() if op in names}
            result = job.execute_in_process(
                instance=instance, partition_key=partition_key, asset_selection=keys,
                run_config={**(run_config or {}), **({"ops": ops} if ops else {})}, raise_on_error=False,
                tags=tags,
            )
            if not result.success:
                raise RuntimeError(f"run for {partition_key} failed: {_failure(result)}")

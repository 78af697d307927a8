"""Run the whole asset graph for one dataset, in process, recording into a Dagster instance.

Assets are taken in dependency order, wave by wave (consecutive assets sharing a partitions
definition, as the regenerate_downstream sensor runs them): each wave runs as one Dagster run per
partition key (the dataset, or each dataset|shard), so the UI shows these runs and their metadata.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import dagster as dg

from .defs.waves import Records, partition_keys, plan, waves
from .defs.partitions import dataset_partitions


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


def _run(job, instance: dg.DagsterInstance, partition_key, keys, run_config: dict | None = None) -> None:
    """One in-process run, tagged with this host and process (release_dead_runs); its failure raised."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    result = job.execute_in_process(instance=instance, partition_key=partition_key, asset_selection=list(keys),
                                    run_config=run_config or {}, raise_on_error=False, tags=tags)
    if not result.success:
        raise RuntimeError(f"run for {partition_key} failed: {_failure(result)}")


def run_dataset(defs: dg.Definitions, dataset: str, instance: dg.DagsterInstance, run_config: dict | None = None,
                op_config: dict[str, dict] | None = None, only: list[str] | None = None,
                log: Callable[[str], None] = print) -> None:
    """Materialize every asset (or those named in `only`) for `dataset`, upstream first.

    `op_config` maps an op (asset) name to its config; each run gets only its own ops' entries.
    """
    instance.add_dynamic_partitions(dataset_partitions.name, [dataset])
    release_dead_runs(instance, log)
    job = defs.resolve_implicit_global_asset_job_def()
    for partitions_def, keys in waves(defs.resolve_asset_graph()):
        keys = [k for k in keys if only is None or k.to_user_string() in only]
        if not keys:
            continue
        names = {k.to_user_string() for k in keys}
        ops = {op: {"config": cfg} for op, cfg in (op_config or {}).items() if op in names}
        for partition_key in partition_keys(partitions_def, dataset):
            log(f"materializing {', '.join(k.to_user_string() for k in keys)} [{partition_key or '-'}]")
            _run(job, instance, partition_key, keys, {**(run_config or {}), **({"ops": ops} if ops else {})})


def regenerate(defs: dg.Definitions, dataset: str, instance: dg.DagsterInstance, max_rounds: int = 50,
               log: Callable[[str], None] = print) -> list[tuple[str | None, tuple[str, ...]]]:
    """In process, what the regenerate_downstream sensor does through the daemon: run the next wave
    of missing or stale partitions until nothing is left. Returns (partition, assets) per run."""
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()
    ran: list[tuple[str | None, tuple[str, ...]]] = []
    for _ in range(max_rounds):
        requests = plan(Records(instance, graph, dataset))
        if not requests:
            return ran
        for request in requests:
            names = tuple(k.to_user_string() for k in request.assets)
            log(f"regenerating {', '.join(names)} [{request.partition_key}] ({request.why})")
            _run(job, instance, request.partition_key, request.assets)
            ran.append((request.partition_key, names))
    raise RuntimeError(f"{dataset} still had work after {max_rounds} rounds")

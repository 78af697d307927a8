"""Run the whole asset graph for one dataset, in process, recording into a Dagster instance.

Assets are taken in dependency order, wave by wave (consecutive assets sharing a partitions
definition, as the regenerate_downstream sensor runs them): each wave runs as one Dagster run per
partition key (the dataset, or each dataset|shard), so the UI shows these runs and their metadata.
"""

from __future__ import annotations

import difflib
import os
import socket
import time
from collections.abc import Callable

import dagster as dg

from .defs.partitions import DATASET_PARTITIONS
from .defs.waves import Records, partition_keys, plan, waves
from .progress import duration

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


def _run(job, instance: dg.DagsterInstance, partition_key, keys, run_config: dict | None = None,
         tags: dict[str, str] | None = None) -> None:
    """One in-process run, tagged with this host and process (release_dead_runs); its failure raised."""
    tags = {**(tags or {}), HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    result = job.execute_in_process(instance=instance, partition_key=partition_key, asset_selection=list(keys),
                                    run_config=run_config or {}, raise_on_error=False, tags=tags)
    if not result.success:
        raise RuntimeError(f"run for {partition_key} failed: {_failure(result)}")


def did_you_mean(unknown: list[str], known: list[str]) -> str:
    close = [m for name in unknown for m in difflib.get_close_matches(name, known, n=1)]
    return f" (did you mean {', '.join(close)}?)" if close else ""


def asset_names(defs: dg.Definitions) -> list[str]:
    """The materializable assets, in dependency order."""
    graph = defs.resolve_asset_graph()
    return [k.to_user_string() for k in graph.toposorted_asset_keys if graph.get(k).is_materializable]


def with_execution_sets(defs: dg.Definitions, names: list[str]) -> list[str]:
    """`names` plus the assets made by the same step (a multi-asset runs whole), in dependency
    order; an unknown name raises ValueError listing the known ones."""
    known = asset_names(defs)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown asset{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
                         f"{did_you_mean(unknown, known)}; the assets are: {', '.join(known)}")
    graph = defs.resolve_asset_graph()
    wanted = set(names)
    for name in names:
        wanted |= {k.to_user_string() for k in graph.get(dg.AssetKey.from_user_string(name)).execution_set_asset_keys}
    return [n for n in known if n in wanted]


def planned_runs(defs: dg.Definitions, dataset: str, only: list[str] | None = None) -> list[tuple[int, str | None, list]]:
    """(wave, partition key, asset keys) of every run run_dataset makes, in order."""
    wanted = None if only is None else set(with_execution_sets(defs, list(only)))
    out = []
    for wave, (partitions_def, keys) in enumerate(waves(defs.resolve_asset_graph())):
        keys = [k for k in keys if wanted is None or k.to_user_string() in wanted]
        out += [(wave, pk, keys) for pk in partition_keys(partitions_def, dataset)] if keys else []
    return out


def run_dataset(defs: dg.Definitions, dataset: str, instance: dg.DagsterInstance, run_config: dict | None = None,
                op_config: dict[str, dict] | None = None, only: list[str] | None = None,
                log: Callable[[str], None] = print) -> None:
    """Materialize every asset (or those named in `only`, with the assets their steps also make) for
    `dataset`, upstream first. Logs a line when each run starts and ends (wave, partition, duration).

    `op_config` maps an op (asset) name to its config; each run gets only its own ops' entries.
    """
    runs = planned_runs(defs, dataset, only)  # an unknown name in `only` fails here, before any run
    instance.add_dynamic_partitions(DATASET_PARTITIONS, [dataset])
    release_dead_runs(instance, log)
    job = defs.resolve_implicit_global_asset_job_def()
    for n, (wave, partition_key, keys) in enumerate(runs, 1):
        names = [k.to_user_string() for k in keys]
        ops = {op: {"config": cfg} for op, cfg in (op_config or {}).items() if op in names}
        head = f"[run {n}/{len(runs)}] wave {wave} · {partition_key or 'unpartitioned'} ·"
        log(f"{head} {', '.join(names)} started")
        start = time.monotonic()
        try:
            _run(job, instance, partition_key, keys, {**(run_config or {}), **({"ops": ops} if ops else {})},
                 tags={"visit/wave": str(wave)})
        except Exception:
            log(f"{head} FAILED after {duration(time.monotonic() - start)}")
            raise
        log(f"{head} done in {duration(time.monotonic() - start)}")


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

"""Run the whole asset graph for one dataset, in process, recording into a Dagster instance.

Assets are taken in dependency order and batched by partitions definition: each batch runs as
one Dagster run per partition key (the dataset, or each dataset|shard), exactly as a UI backfill
would, so the UI shows these runs and their metadata afterwards.
"""

from __future__ import annotations

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


def run_dataset(defs: dg.Definitions, dataset: str, instance: dg.DagsterInstance, run_config: dict | None = None,
                op_config: dict[str, dict] | None = None, only: list[str] | None = None,
                log: Callable[[str], None] = print) -> None:
    """Materialize every asset (or those named in `only`) for `dataset`, upstream first.

    `op_config` maps an op (asset) name to its config; each run gets only its own ops' entries.
    """
    instance.add_dynamic_partitions(dataset_partitions.name, [dataset])
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
            )
            if not result.success:
                failures = [e.message for e in result.all_events if e.is_failure]
                raise RuntimeError(f"run for {partition_key} failed: {failures[-1] if failures else 'see the UI'}")

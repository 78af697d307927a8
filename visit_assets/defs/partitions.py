"""Partitions shared by every domain: dataset (dynamic) and dataset x shard (per-image stages)."""

from __future__ import annotations

import warnings

import dagster as dg

from .. import settings

DATASET_PARTITIONS = "dataset"  # the dynamic partitions' name, for the instance calls that take one
dataset_partitions = dg.DynamicPartitionsDefinition(name=DATASET_PARTITIONS)
shard_partitions = dg.StaticPartitionsDefinition([str(i) for i in range(settings.n_shards())])
image_partitions = dg.MultiPartitionsDefinition({"dataset": dataset_partitions, "shard": shard_partitions})

# A per-image stage reads its dataset-level parent whole (then filters to its shard).
with warnings.catch_warnings():  # beta in Dagster 1.13, stable in behaviour for our use
    warnings.simplefilter("ignore", dg.BetaWarning)
    from_dataset = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="dataset")


def dataset_and_shard(context: dg.AssetExecutionContext) -> tuple[str, int]:
    keys = context.partition_key.keys_by_dimension
    return keys["dataset"], int(keys["shard"])

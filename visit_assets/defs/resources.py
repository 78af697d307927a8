"""Resources every domain uses: the Parquet store (and the IO manager in front of it) and the watched datasets folder."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .. import settings
from ..lib.metadata.dataset import DatasetLayout, check_dataset_name, read_layout
from ..lib.storage import Parent, ParquetStore, Versioned

# Where an unpartitioned asset (the seed instructions) is stored: the store's folders are per dataset.
STORE_DATASET = "visit/store_dataset"


class StoreResource(dg.ConfigurableResource):
    """Root of the Parquet store (a local folder here; a mounted bucket on a cluster)."""

    root: str | None = None  # default: $VISIT_STORE, else $VISIT_HOME/store, else ./visit_data/store
    exports_root: str | None = None  # the export folders (LLaVA JSON, manifest); default: $VISIT_HOME/exports

    def store(self) -> ParquetStore:
        return ParquetStore(self.root or settings.store_root())

    def parent(self, asset: str, dataset: str, shards=(None,)) -> Parent:
        """A view of an asset that is not an input of the step (history, or a read its run config asks for)."""
        return Parent(self.store(), asset, dataset, tuple(shards))

    def exports(self) -> Path:
        return Path(self.exports_root or settings.exports_root())


def _dataset_and_shard(key: str | None, default_dataset: str | None) -> tuple[str, int | None]:
    if key is None:
        if default_dataset is None:
            raise ValueError(f"an unpartitioned asset needs the {STORE_DATASET!r} metadata to be stored")
        return default_dataset, None
    if isinstance(key, dg.MultiPartitionKey):
        return key.keys_by_dimension["dataset"], int(key.keys_by_dimension["shard"])
    return key, None


class ParquetIOManager(dg.ConfigurableIOManager):
    """Assets return `Versioned` frames and receive `Parent` views of their inputs; this class puts
    them in the store (versioned folders, `_current` pointers) and names the partitions, so no asset
    body repeats an asset, dataset or shard name."""

    store: StoreResource

    def handle_output(self, context: dg.OutputContext, obj: Versioned) -> None:
        if not isinstance(obj, Versioned):
            raise TypeError(f"{context.asset_key.to_user_string()} returned {type(obj).__name__}, not a Versioned frame")
        key = context.asset_partition_key if context.has_asset_partitions else None
        dataset, shard = _dataset_and_shard(key, context.definition_metadata.get(STORE_DATASET))
        self.store.store().write(context.asset_key.path[-1], dataset, obj.data_version, obj.frame, shard,
                                 **obj.pointer_fields)

    def load_input(self, context: dg.InputContext) -> Parent:
        asset = context.asset_key.path[-1]
        upstream = context.upstream_output.definition_metadata if context.upstream_output else {}
        keys = context.asset_partition_keys if context.has_asset_partitions else [None]
        parts = [_dataset_and_shard(k, upstream.get(STORE_DATASET)) for k in keys]
        datasets = {d for d, _ in parts}
        if len(datasets) != 1:
            raise ValueError(f"{asset} is read across datasets {sorted(datasets)}: a step reads one dataset")
        shards = sorted(s for _, s in parts if s is not None)
        return Parent(self.store.store(), asset, datasets.pop(), tuple(shards) or (None,))


class DatasetsResource(dg.ConfigurableResource):
    """The watched folder: each sub-folder is a dataset (see lib.metadata.dataset)."""

    root: str | None = None  # default: $VISIT_DATASETS, else $VISIT_HOME/datasets

    def base(self) -> Path:
        return Path(self.root or settings.datasets_root())

    def folders(self) -> list[Path]:
        base = self.base()
        return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")) if base.exists() else []

    def layout(self, dataset: str) -> DatasetLayout:
        path = self.base() / check_dataset_name(dataset)
        if not path.is_dir():
            raise FileNotFoundError(f"dataset {dataset!r} has no folder at {path}")
        return read_layout(path)

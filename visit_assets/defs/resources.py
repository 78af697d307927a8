"""Resources every domain uses: the Parquet store and the watched datasets folder."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .. import settings
from ..lib.metadata.dataset import DatasetLayout, check_dataset_name, read_layout
from ..lib.storage import ParquetStore


class StoreResource(dg.ConfigurableResource):
    """Root of the Parquet store (a local folder here; a mounted bucket on a cluster)."""

    root: str | None = None  # default: $VISIT_STORE, else $VISIT_HOME/store, else ./visit_data/store
    exports_root: str | None = None  # the export folders (LLaVA JSON, manifest); default: $VISIT_HOME/exports

    def store(self) -> ParquetStore:
        return ParquetStore(self.root or settings.store_root())

    def exports(self) -> Path:
        return Path(self.exports_root or settings.exports_root())


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

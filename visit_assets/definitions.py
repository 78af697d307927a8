"""The code location: assets, checks, sensors and resources of every domain, gathered here only."""

from __future__ import annotations

import dagster as dg

from .defs.ingest import assets as ingest_assets
from .defs.ingest import sensors as ingest_sensors
from .defs.resources import DatasetsResource, StoreResource

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([ingest_assets]),
    sensors=[ingest_sensors.dataset_folder_sensor, ingest_sensors.automation_sensor],
    schedules=[ingest_sensors.nightly_reingest],
    jobs=[ingest_sensors.ingest_dataset_job],
    resources={"store": StoreResource(), "datasets": DatasetsResource()},
)

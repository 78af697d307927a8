"""Re-materialize seed_instructions when the shipped seeds file changes; the rest follows by automation."""

import dagster as dg

from ... import settings
from ...lib.mminstruct.seeds import SeedFileError, seeds_version
from ..resources import StoreResource
from . import assets  # the module, not its assets: each Dagster object is found once, where it is defined


@dg.sensor(target=[assets.seed_instructions], minimum_interval_seconds=settings.sensor_interval_s(),
           default_status=dg.DefaultSensorStatus.RUNNING)
def seed_file_sensor(context: dg.SensorEvaluationContext, store: StoreResource) -> dg.SensorResult:
    try:
        version = seeds_version()
    except SeedFileError as e:  # a broken edit: say so, keep the last good seeds
        return dg.SensorResult(skip_reason=f"seed file is invalid: {e}")
    current = store.store().current("seed_instructions", assets.SEEDS_DATASET)
    if current is not None and current["data_version"] == version:
        return dg.SensorResult(skip_reason="seed instructions unchanged")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"seeds:{version}")])

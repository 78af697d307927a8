"""Watch the datasets folder: new folders become partitions, changed metadata triggers re-ingest.

The sensor compares a cheap fingerprint of each folder (names, sizes, mtimes of its metadata
files) with the one recorded by the last ingest in the store, so its state survives sensor
resets and runs made outside the daemon. The ingest computes the content hash: a touched but
unchanged file re-ingests to the same data version, and nothing downstream of it runs.
"""

import dagster as dg

from ... import settings
from ...lib.metadata.dataset import DatasetError, fingerprint
from ..partitions import DATASET_PARTITIONS, dataset_partitions
from ..resources import DatasetsResource, StoreResource
from . import assets  # the module, not its assets: each Dagster object is found once, where it is defined

# A named job, so sensor and schedule runs read as "ingest_dataset" in the UI.
ingest_dataset_job = dg.define_asset_job("ingest_dataset", selection=[assets.source_records])


@dg.sensor(job=ingest_dataset_job, minimum_interval_seconds=settings.sensor_interval_s(),
           default_status=dg.DefaultSensorStatus.RUNNING)
def dataset_folder_sensor(context: dg.SensorEvaluationContext, datasets: DatasetsResource,
                          store: StoreResource) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(DATASET_PARTITIONS))
    parquet = store.store()
    added, requests = [], []
    for folder in datasets.folders():
        try:
            fp = fingerprint(folder)
        except (DatasetError, OSError) as e:
            context.log.warning(f"skipping {folder.name}: {e}")
            continue
        name = folder.name
        if name not in known:
            added.append(name)
        ingested = parquet.current("source_records", name)
        if ingested is None or ingested.get("fingerprint") != fp:
            # run_key dedupes: a tick that sees the same unchanged folder again requests nothing new.
            requests.append(dg.RunRequest(partition_key=name, run_key=f"{name}:{fp}"))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[dataset_partitions.build_add_request(added)] if added else [],
    )


@dg.schedule(cron_schedule=settings.reingest_cron(), job=ingest_dataset_job, default_status=dg.DefaultScheduleStatus.STOPPED)
def nightly_reingest(context: dg.ScheduleEvaluationContext):
    """Re-ingest every dataset nightly; unchanged ones keep their data version, so only real changes flow down."""
    for name in context.instance.get_dynamic_partitions(DATASET_PARTITIONS):
        yield dg.RunRequest(partition_key=name, run_key=f"{name}:{context.scheduled_execution_time.isoformat()}")

"""Watch the datasets folder: new folders become partitions, changed metadata triggers re-ingest.

The sensor compares a cheap fingerprint (names, sizes, mtimes); the ingest itself computes the
content hash, so a touched-but-unchanged file re-ingests to the same data version and nothing
downstream of it changes.
"""


import json

import dagster as dg

from ...lib.metadata.dataset import DatasetError, fingerprint
from ..partitions import dataset_partitions
from ..resources import DatasetsResource
from .assets import source_records


@dg.sensor(target=[source_records], minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def dataset_folder_sensor(context: dg.SensorEvaluationContext, datasets: DatasetsResource) -> dg.SensorResult:
    seen: dict[str, str] = json.loads(context.cursor or "{}")
    known = set(context.instance.get_dynamic_partitions(dataset_partitions.name))
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
        if name not in known or seen.get(name) != fp:
            requests.append(dg.RunRequest(partition_key=name, run_key=f"{name}:{fp}"))
        seen[name] = fp
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[dataset_partitions.build_add_request(added)] if added else [],
        cursor=json.dumps(seen, sort_keys=True),
    )


@dg.schedule(cron_schedule="0 3 * * *", target=[source_records], default_status=dg.DefaultScheduleStatus.STOPPED)
def nightly_reingest(context: dg.ScheduleEvaluationContext):
    """Re-ingest every dataset nightly; unchanged ones keep their data version, so only real changes flow down."""
    for name in context.instance.get_dynamic_partitions(dataset_partitions.name):
        yield dg.RunRequest(partition_key=name, run_key=f"{name}:{context.scheduled_execution_time.isoformat()}")


# Runs the per-image stages whose parents changed (the assets' `eager` automation conditions).
automation_sensor = dg.AutomationConditionSensorDefinition(
    "regenerate_downstream", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)

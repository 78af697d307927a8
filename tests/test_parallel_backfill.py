"""Several shard runs at once, in separate processes, sharing one instance and one store: no locks."""

import os
import subprocess
import sys

import dagster as dg

from visit_assets.definitions import defs
from visit_assets.lib.storage import ParquetStore

SHARD_RUN = """
import sys
import dagster as dg
from visit_assets.definitions import defs

key = dg.MultiPartitionKey({"dataset": "sample", "shard": sys.argv[1]})
selection = [dg.AssetKey(k) for k in ("grouped_metadata", "metadata_rejects", "image_descriptions")]
with dg.DagsterInstance.get() as instance:
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=key, asset_selection=selection, raise_on_error=False)
sys.exit(0 if result.success else 1)
"""


def test_shards_backfill_in_parallel_processes(home, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("dataset", ["sample"])
        job = defs.resolve_implicit_global_asset_job_def()
        assert job.execute_in_process(instance=instance, partition_key="sample",
                                      asset_selection=[dg.AssetKey("source_records")]).success
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    procs = [subprocess.Popen([sys.executable, "-c", SHARD_RUN, str(s)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for s in range(4)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "database is locked" not in out
    store = ParquetStore(home / "store")
    grouped = store.read_shards("grouped_metadata", "sample", range(4))
    rejects = store.read_shards("metadata_rejects", "sample", range(4))
    records = store.read("source_records", "sample")
    assert grouped["n_source_records"].sum() + rejects.height == records.height
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert sum(r.is_success for r in runs) == 5

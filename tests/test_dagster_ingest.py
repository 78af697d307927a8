"""Real Dagster: definitions load, partitions materialize in process, sensors and staleness work."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from visit_assets.definitions import defs
from visit_assets.defs.ingest.sensors import dataset_folder_sensor
from visit_assets.defs.partitions import shard_partitions
from visit_assets.defs.resources import DatasetsResource, StoreResource
from visit_assets.defs.waves import Records, plan
from visit_assets.lib.catalog import build_catalog
from visit_assets.lib.storage import ParquetStore
from visit_assets.runner import run_dataset

INGEST = ["source_records", "grouped_metadata", "metadata_rejects", "vlm_descriptions", "image_descriptions"]


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def test_definitions_load_with_every_ingest_asset():
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert set(INGEST) <= keys


def test_sample_runs_end_to_end_with_checks_and_metadata(home, instance):
    run_dataset(defs, "sample", instance, only=INGEST, log=lambda _: None)
    store = ParquetStore(home / "store")
    grouped = store.read_shards("grouped_metadata", "sample", shard_partitions.get_partition_keys())
    assert grouped.height >= 12
    assert {"dataset", "dataset_version", "code_version", "source_record_ids"} <= set(grouped.columns)
    # Checks ran and passed for every shard.
    n_shards = len(shard_partitions.get_partition_keys())
    for check in ("records_accounted_for", "unique_image_ids", "required_columns"):
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("grouped_metadata"), check), limit=50)
        assert len(history) == n_shards
        assert all(r.event.dagster_event.event_specific_data.passed for r in history)
    meta = instance.get_latest_materialization_event(dg.AssetKey("source_records")).asset_materialization.metadata
    assert meta["dagster/row_count"].value > 0 and meta["dataset_version"].value
    assert {"record_id", "kind", "image_id"} <= {c.name for c in meta["dagster/column_schema"].schema.columns}
    assert instance.event_log_storage.get_asset_check_execution_history(  # the columns readers rely on are there
        dg.AssetCheckKey(dg.AssetKey("source_records"), "required_columns"), limit=1)[0].event.dagster_event \
        .event_specific_data.passed
    by_format = meta["records_by_format_and_kind"].value  # what each source dataset brought, per kind
    assert set(by_format) >= {"coco", "records"} and sum(n for kinds in by_format.values()
                                                          for n in kinds.values()) == meta["dagster/row_count"].value
    grouped_meta = instance.get_latest_materialization_event(dg.AssetKey("grouped_metadata")).asset_materialization
    assert "images_from_several_sources" in grouped_meta.metadata
    per_source = grouped_meta.metadata["records_by_source"].value  # this shard's records, per source and kind
    assert per_source and all({"format", "images", "kept", "rejected"} == set(c) for c in per_source.values())
    by_count = grouped_meta.metadata["images_by_source_count"].value
    assert sum(by_count.values()) == grouped_meta.metadata["dagster/row_count"].value
    # The catalog answers lineage questions across assets.
    con = duckdb.connect(str(build_catalog(home / "store")), read_only=True)
    n = con.sql("SELECT count(DISTINCT image_id) FROM image_lineage").fetchone()[0]
    assert n == grouped.height
    reasons = dict(con.sql("SELECT reason, sum(records) FROM rejects_by_reason GROUP BY 1").fetchall())
    assert reasons.get("image_too_small") and reasons.get("duplicate_caption")


def _stale(instance, key: str, partition: str | dg.MultiPartitionKey) -> StaleStatus:
    resolver = CachingStaleStatusResolver(instance, defs.resolve_asset_graph(), LoadingContextForTest(instance))
    return resolver.get_status(dg.AssetKey(key), partition)


def test_changed_metadata_gives_new_version_and_stale_downstream(home, instance):
    run_dataset(defs, "sample", instance, only=INGEST, log=lambda _: None)
    store = ParquetStore(home / "store")
    before = store.current("source_records", "sample")["dataset_version"]
    captions = home / "datasets" / "sample" / "annotations" / "captions.json"
    data = json.loads(captions.read_text())
    data["annotations"][0]["caption"] = "A completely rewritten caption for this photograph."
    captions.write_text(json.dumps(data))
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, partition_key="sample",
                                  asset_selection=[dg.AssetKey("source_records")]).success
    after = store.current("source_records", "sample")["dataset_version"]
    assert after != before
    shard = dg.MultiPartitionKey({"dataset": "sample", "shard": "0"})
    assert _stale(instance, "grouped_metadata", shard) == StaleStatus.STALE
    assert len(store.versions("source_records", "sample")) == 2  # the old version is kept


def test_sensor_adds_new_dataset_partition_and_requests_ingest(home, instance):
    resources = {"datasets": DatasetsResource(root=str(home / "datasets")),
                 "store": StoreResource(root=str(home / "store"))}
    tick = lambda: dataset_folder_sensor(dg.build_sensor_context(instance=instance, resources=resources))  # noqa: E731
    result = tick()
    assert [r.partition_key for r in result.run_requests] == ["sample"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["sample"]
    run_dataset(defs, "sample", instance, only=INGEST, log=lambda _: None)
    quiet = tick()
    assert quiet.run_requests == [] and quiet.dynamic_partitions_requests == []
    (home / "datasets" / "sample" / "qa_pairs.jsonl").write_text(
        '{"id": "new", "image": "coffee.jpg", "captions": ["A cup of coffee on a saucer, seen from above."]}\n')
    changed = tick()
    assert [r.partition_key for r in changed.run_requests] == ["sample"]
    assert changed.run_requests[0].run_key != result.run_requests[0].run_key


def test_regeneration_plans_only_the_changed_datasets_partitions(home, instance):
    import shutil

    shutil.copytree(home / "datasets" / "sample", home / "datasets" / "other")
    run_dataset(defs, "sample", instance, only=INGEST, log=lambda _: None)
    run_dataset(defs, "other", instance, only=INGEST, log=lambda _: None)
    graph = defs.resolve_asset_graph()
    ingest = {dg.AssetKey(a) for a in INGEST}

    def planned(dataset: str) -> set:
        return {(r.partition_key, k) for r in plan(Records(instance, graph, dataset)) for k in r.assets if k in ingest}

    assert not planned("sample") and not planned("other")
    # Re-ingesting unchanged metadata keeps the data version: nothing downstream is stale.
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, partition_key="other",
                                  asset_selection=[dg.AssetKey("source_records")]).success
    assert not planned("other")
    # Change one dataset's metadata and re-ingest it, as the folder sensor would.
    qa = home / "datasets" / "sample" / "qa_pairs.jsonl"
    qa.write_text(qa.read_text() + '{"id": "extra", "image": "coffee.jpg", "ocr": ["EXTRA"]}\n')
    assert job.execute_in_process(instance=instance, partition_key="sample",
                                  asset_selection=[dg.AssetKey("source_records")]).success
    requested = planned("sample")
    # every shard re-groups from the new source records (each keeps its data version if unchanged)
    assert {(pk.keys_by_dimension["shard"], k.to_user_string()) for pk, k in requested} == {
        (s, a) for s in shard_partitions.get_partition_keys() for a in ("grouped_metadata", "metadata_rejects")}
    assert not planned("other")


def test_webdataset_and_parquet_shards_ingest_in_place(home, instance):
    """Tar and Parquet shards (img2dataset's layout) ingest through Dagster without extraction."""
    from tests.loaders.test_shards import files_in, write_parquet, write_tar

    images = home / "datasets" / "webshards" / "images"
    images.mkdir(parents=True)
    write_tar(images / "00000.tar")
    write_parquet(images / "00001.parquet")
    before = files_in(images.parent)
    run_dataset(defs, "webshards", instance, only=INGEST[:3], log=lambda _: None)
    store = ParquetStore(home / "store")
    shards = shard_partitions.get_partition_keys()
    grouped = store.read_shards("grouped_metadata", "webshards", shards)
    assert sorted(grouped["image_key"]) == ["00000.tar/000000000.jpg", "00000.tar/000000001.jpg",
                                            "00001.parquet/100", "00001.parquet/101"]
    rejects = store.read_shards("metadata_rejects", "webshards", shards)
    assert "image_missing" in set(rejects["reason"])
    assert files_in(images.parent) == before

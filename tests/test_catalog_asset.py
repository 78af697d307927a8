"""duckdb_catalog: the catalog built as an asset (dagster-duckdb's resource), out of date only when
an asset gets its first data or rows; the regeneration sensor asks for it then, not per version."""

from __future__ import annotations

import dagster as dg
import duckdb
import polars as pl

from visit_assets.definitions import build_defs
from visit_assets.defs.catalog.assets import CATALOG_ASSET, CATALOGUED, CatalogResource, catalog_requests, duckdb_catalog
from visit_assets.defs.resources import StoreResource
from visit_assets.lib.storage import ParquetStore


def rows(n: int, version: str) -> pl.DataFrame:
    return pl.DataFrame({"image_id": [f"i{k}" for k in range(n)], "dataset": "d1", "dataset_version": version})


def build(instance: dg.DagsterInstance, store: StoreResource) -> dg.AssetMaterialization:
    result = dg.materialize([duckdb_catalog], instance=instance, resources={"store": store, "catalog": CatalogResource()})
    assert result.success
    [event] = result.asset_materializations_for_node("duckdb_catalog")
    return event


def test_the_catalog_reads_every_other_asset_of_the_graph():
    graph = build_defs().resolve_asset_graph()
    others = {k.to_user_string() for k in graph.get_all_asset_keys() if k != CATALOG_ASSET}
    assert set(CATALOGUED) == others, "add the new asset to CATALOGUED (defs/catalog/assets.py)"
    assert graph.get(CATALOG_ASSET).parent_keys == {dg.AssetKey(a) for a in CATALOGUED}


def test_built_as_an_asset_and_asked_for_again_only_when_its_views_would_change(tmp_path):
    parquet, store = ParquetStore(tmp_path), StoreResource(root=str(tmp_path))
    parquet.write("image_facts", "d1", "v1", rows(3, "v1"), shard=0, dataset_version="v1")
    parquet.write("visit_export", "d1", "e1", rows(0, "v1"), export_version="e1")  # data, no rows yet
    with dg.instance_for_test() as instance:
        assert [r.asset_selection for r in catalog_requests(instance, store)] == [[CATALOG_ASSET]]  # never built
        event = build(instance, store)
        assert event.metadata["assets_without_rows"].value == ["visit_export"]
        con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
        assert con.sql("SELECT count(*) FROM image_facts").fetchone() == (3,)
        con.close()
        assert catalog_requests(instance, store) == []

        parquet.write("image_facts", "d1", "v2", rows(5, "v2"), shard=0, dataset_version="v2")  # a new version
        assert catalog_requests(instance, store) == []  # the views read it already
        con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
        assert con.sql("SELECT count(*) FROM image_facts").fetchone() == (5,)
        con.close()

        parquet.write("visit_export", "d1", "e2", rows(2, "v2"), export_version="e2")  # its first rows
        [request] = catalog_requests(instance, store)
        assert request.run_key and request.run_key.startswith("catalog:")
        assert build(instance, store).metadata["assets_without_rows"].value == []
        assert catalog_requests(instance, store) == []


def test_an_empty_store_asks_for_no_catalog(tmp_path):
    with dg.instance_for_test() as instance:
        assert catalog_requests(instance, StoreResource(root=str(tmp_path / "store"))) == []

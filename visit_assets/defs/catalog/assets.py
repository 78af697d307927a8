"""duckdb_catalog: the DuckDB file of views over the store (lib/catalog.py, sql/), rebuilt as an asset.

Its views read each asset's current files when queried, so a new version of an asset already in
the catalog changes nothing in it: the catalog is out of date only when an asset gets its first
data or its first rows, or the SQL changes. Its data version is a hash of exactly that
(catalog_inputs + the SQL's code version), and regenerate_downstream (defs/automation.py) rebuilds
it when that hash differs from the last build's, once the store is quiet: not once per wave.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from ...lib import catalog as catalog_mod
from ...lib.code_version import code_version
from ...lib.ids import content_hash
from ..resources import StoreResource

CATALOG_VERSION = code_version(catalog_mod, files=("sql/*.sql",))
CATALOG_ASSET = dg.AssetKey("duckdb_catalog")
# Every asset of the store: the catalog reads them all (a test holds this list to the graph).
CATALOGUED = [
    "source_records", "grouped_metadata", "metadata_rejects", "vlm_descriptions", "image_descriptions",
    "image_embeddings", "image_facts", "seed_instructions", "generated_instructions", "clustered_instructions",
    "instruction_matches", "instruction_examples", "generated_conversations", "conversation_attempts",
    "filtered_conversations", "conversation_rejects", "imported_conversations", "imported_rejects",
    "quality_scores", "image_clusters", "selected_subset", "selection_ranking", "pairwise_evaluation", "visit_export",
]


class CatalogResource(DuckDBResource):
    """dagster-duckdb's resource for the catalog file; `database` empty: `<store>/catalog.duckdb`."""

    database: str = ""

    def path(self, store: StoreResource) -> Path:
        return Path(self.database) if self.database else store.store().root.resolve() / catalog_mod.CATALOG_FILE

    @contextmanager
    def connection(self, store: StoreResource) -> Iterator[duckdb.DuckDBPyConnection]:
        at = DuckDBResource(database=str(self.path(store)), connection_config=self.connection_config)
        with at.get_connection() as con:
            yield con


def catalog_version(inputs: list[tuple[str, bool]]) -> str:
    return content_hash(inputs, CATALOG_VERSION)


@dg.asset(group_name="catalog", kinds={"duckdb"}, code_version=CATALOG_VERSION, deps=CATALOGUED)
def duckdb_catalog(store: StoreResource, catalog: CatalogResource):
    """DuckDB views over the store: each asset's current rows and every version (`<asset>_all`),
    lineage, version diffs, rejects by reason. Open it read-only while runs write the store."""
    inputs = catalog_mod.catalog_inputs(store.store().root)
    with catalog.connection(store) as con:
        catalog_mod.fill_catalog(con, store.store().root)
        views = [r[0] for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
    return dg.MaterializeResult(data_version=dg.DataVersion(catalog_version(inputs)), metadata={
        "path": dg.MetadataValue.path(str(catalog.path(store))), "views": len(views),
        "view_names": dg.MetadataValue.json(views),
        "assets_without_rows": [a for a, has_rows in inputs if not has_rows]})


def catalog_requests(instance: dg.DagsterInstance, store: StoreResource) -> list[dg.RunRequest]:
    """A run of duckdb_catalog when what decides its views changed since its last build (a run key
    per version: a build that fails is not retried every tick)."""
    inputs = catalog_mod.catalog_inputs(store.store().root)
    if not inputs:  # an empty store: nothing to catalog yet
        return []
    version = catalog_version(inputs)
    event = instance.get_latest_materialization_event(CATALOG_ASSET)
    tags = (event.asset_materialization.tags if event and event.asset_materialization else None) or {}
    built = tags.get("dagster/data_version")
    if built == version:
        return []
    return [dg.RunRequest(run_key=f"catalog:{version}", asset_selection=[CATALOG_ASSET],
                          tags={"visit/why": "new assets or rows in the store, or new catalog SQL"})]

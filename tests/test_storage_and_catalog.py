import shutil

import duckdb
import polars as pl
import pytest

from visit_assets.lib.catalog import build_catalog, view_names
from visit_assets.lib.storage import ParquetStore

# Every column the catalog's derived views read from grouped_metadata (sql/version_diff.sql), as the asset writes them.
GROUPED_COLUMNS = {"image_key": pl.String, "width": pl.Int64, "height": pl.Int64, "image_mode": pl.String,
                   "image_checked": pl.Boolean, "captions": pl.List(pl.String), "boxes": pl.List(pl.String),
                   "qa": pl.List(pl.String), "ocr": pl.List(pl.String), "sources": pl.List(pl.String),
                   "source_record_ids": pl.List(pl.String), "code_version": pl.String}


def frame(version, n):
    ids = pl.DataFrame({"image_id": [f"i{k}" for k in range(n)], "dataset": "d1", "dataset_version": version})
    return ids.with_columns(pl.lit(None, dtype).alias(name) for name, dtype in GROUPED_COLUMNS.items())


def test_versions_are_kept_and_current_moves(tmp_path):
    store = ParquetStore(tmp_path)
    store.write("grouped_metadata", "d1", "v1", frame("v1", 2), shard=0, dataset_version="v1")
    store.write("grouped_metadata", "d1", "v2", frame("v2", 3), shard=0, dataset_version="v2")
    assert store.versions("grouped_metadata", "d1") == ["v1", "v2"]
    assert store.read("grouped_metadata", "d1", 0).height == 3
    assert store.current("grouped_metadata", "d1", 0)["data_version"] == "v2"
    assert not list(tmp_path.rglob(".tmp-*"))  # atomic writes leave no temp files


def test_unsafe_names_are_refused(tmp_path):
    store = ParquetStore(tmp_path)
    for bad in ("../x", "a'; DROP TABLE x; --", "", "a/b"):
        with pytest.raises(ValueError):
            store.write("grouped_metadata", bad, "v1", frame("v1", 1))


def test_missing_partition_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not been materialized"):
        ParquetStore(tmp_path).read("grouped_metadata", "d1", 0)


def test_catalog_has_current_and_all_versions(tmp_path):
    store = ParquetStore(tmp_path)
    store.write("grouped_metadata", "d1", "v1", frame("v1", 2), shard=0, dataset_version="v1")
    store.write("grouped_metadata", "d1", "v2", frame("v2", 3), shard=0, dataset_version="v2")
    store.write("grouped_metadata", "d1", "v2", frame("v2", 1), shard=1, dataset_version="v2")
    path = build_catalog(tmp_path)
    assert {"grouped_metadata", "grouped_metadata_all", "current_partitions"} <= set(view_names(path))
    con = duckdb.connect(str(path), read_only=True)
    assert con.sql("SELECT count(*) FROM grouped_metadata").fetchone()[0] == 4
    assert con.sql("SELECT count(*) FROM grouped_metadata_all").fetchone()[0] == 6
    assert con.sql("SELECT count(DISTINCT dataset_version) FROM grouped_metadata").fetchone()[0] == 1


def test_a_prompt_file_edit_changes_only_the_versions_of_stages_that_render_it(tmp_path, monkeypatch):
    import shutil

    from visit_assets.lib import code_version as cv
    from visit_assets.lib.mminstruct import filters

    shutil.copytree(cv.PACKAGE / "prompts", tmp_path / "prompts")
    monkeypatch.setattr(cv, "PACKAGE", tmp_path)
    fit = ("prompts/mminstruct/fit_check.yaml",)
    other = ("prompts/mminstruct/cluster_merge.yaml",)
    before = cv.code_version(filters, files=fit), cv.code_version(filters, files=other)
    path = tmp_path / fit[0]
    path.write_text(path.read_text(encoding="utf-8").replace("version:", "version: 99 #", 1), encoding="utf-8")
    after = cv.code_version(filters, files=fit), cv.code_version(filters, files=other)
    assert after[0] != before[0] and after[1] == before[1]
    assert cv.code_version(filters) != before[0]  # the files are part of the version, not ignored


def test_embedding_matrix_reads_vectors_without_python_floats():
    import numpy as np
    import polars as pl

    from visit_assets.lib.frames import embedding_matrix

    s = pl.Series("embedding", [[1.0, 2.0, 3.0], None, [0.5, -1.0, 2.5]], dtype=pl.List(pl.Float32))
    m = embedding_matrix(s)
    assert m.dtype == np.float32 and m.shape == (3, 3)
    assert m[0].tolist() == [1.0, 2.0, 3.0] and np.isnan(m[1]).all() and m[2].tolist() == [0.5, -1.0, 2.5]
    assert embedding_matrix(s.clear(), 3).shape == (0, 3)
    fixed = embedding_matrix(s.cast(pl.Array(pl.Float32, 3)))  # the store keeps them as fixed-size arrays
    assert fixed.shape == (3, 3) and fixed[2].tolist() == [0.5, -1.0, 2.5]


def test_a_catalog_view_that_cannot_be_built_raises_with_its_name(tmp_path):
    """A view that does not bind to the stored columns (a store of an older layout) or a broken statement
    is an error naming the view and DuckDB's cause, not a catalog that silently lacks the view."""
    from visit_assets.lib.catalog import SQL_DIR, CatalogError

    store = ParquetStore(tmp_path / "store")
    store.write("grouped_metadata", "d1", "v1", frame("v1", 2).drop("image_key"), shard=0, dataset_version="v1")
    with pytest.raises(CatalogError, match=r"vd_raw_grouped_metadata cannot be built: .*image_key"):
        build_catalog(tmp_path / "store")
    store.write("grouped_metadata", "d1", "v2", frame("v2", 2), shard=0, dataset_version="v2")  # every column now
    sql = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql)
    lineage = (sql / "lineage.sql").read_text()
    (sql / "lineage.sql").write_text(lineage + "\nCREATE OR REPLACE VIEW broken AS SELECT no_such_function(1);\n")
    with pytest.raises(CatalogError, match=r"catalog: broken cannot be built: .*no_such_function") as raised:
        build_catalog(tmp_path / "store", sql_dir=sql)
    assert isinstance(raised.value.__cause__, duckdb.CatalogException)


def test_a_store_lacking_an_asset_still_builds_the_other_views(tmp_path, caplog):
    """An asset with no data files yet (source_records here), or with empty partitions only (no row, so
    only its lineage columns), is the one case left quiet: the views over it are left out (the
    version-diff macros keep their empty stubs), the rest is built, and each omission is logged."""
    import logging
    import warnings

    store = ParquetStore(tmp_path)
    store.write("grouped_metadata", "d1", "v1", frame("v1", 2), shard=0, dataset_version="v1")
    empty = pl.DataFrame(schema={"image_id": pl.String, "dataset": pl.String, "dataset_version": pl.String})
    store.write("generated_conversations", "d1", "v1", empty, shard=0, dataset_version="v1")
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, logger="visit_assets.lib.catalog"):
        warnings.simplefilter("error")
        path = build_catalog(tmp_path)
    views = set(view_names(path))
    assert {"current_partitions", "grouped_metadata", "grouped_metadata_all", "generated_conversations"} <= views
    assert not {"image_lineage", "dataset_versions"} & views  # both read source_records
    logged = caplog.text
    assert "image_lineage not built: asset source_records has no data yet" in logged
    assert "vd_raw_generated_conversations not built: asset generated_conversations has no rows yet" in logged
    assert "vd_raw_grouped_metadata" not in logged
    con = duckdb.connect(str(path), read_only=True)
    try:
        assert con.sql("SELECT count(*) FROM vd_raw_grouped_metadata()").fetchone()[0] == 2
        assert con.sql("SELECT count(*) FROM vd_raw_generated_conversations()").fetchone()[0] == 0  # the stub
    finally:
        con.close()


def test_an_all_null_column_is_stored_typed_and_reads_filtered(tmp_path):
    """A column no row has a value for gets Polars' Null type (image_facts' note and model, an LLM
    error). Stored as such, DuckDB could not read it filtered ("PlainSkip not implemented"), so a
    catalog query over the view failed; the store writes it as String instead, at any depth."""
    n = 20_000  # the error needs the filter to skip whole vectors of the column
    ids = [f"i{(k * 7919) % n}" for k in range(n)]  # a permutation: the row asked for is in the middle
    rows = pl.DataFrame({"image_id": ids, "dataset": "d1", "dataset_version": "v1", "note": [None] * n,
                         "facts": [[] for _ in range(n)], "meta": [{"model": None}] * n})
    assert rows.schema["note"] == pl.Null and rows.schema["facts"] == pl.List(pl.Null)
    path = ParquetStore(tmp_path).write("image_facts", "d1", "v1", rows, shard=0, dataset_version="v1")
    stored = pl.read_parquet_schema(path)
    assert stored["note"] == pl.String and stored["facts"] == pl.List(pl.String)
    assert stored["meta"] == pl.Struct({"model": pl.String})
    assert pl.read_parquet(path).drop("note", "facts", "meta").equals(rows.drop("note", "facts", "meta"))
    con = duckdb.connect(str(build_catalog(tmp_path)), read_only=True)
    try:
        found = con.execute("SELECT image_id, note, facts, meta FROM image_facts WHERE image_id = 'i5'").fetchall()
    finally:
        con.close()
    assert found == [("i5", None, [], {"model": None})]

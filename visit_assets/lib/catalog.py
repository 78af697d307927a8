"""Build the DuckDB catalog: views over the Parquet store, from the templates in `sql/`.

The catalog holds views only, so it is rebuilt in a second and never blocks a writer.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from string import Template

import duckdb

from .storage import safe_name

log = logging.getLogger(__name__)
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"  # package data; the top-level sql/ links here
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # asset names become view names, unquoted


def view_name(asset: str) -> str:
    if not _IDENTIFIER.fullmatch(safe_name(asset, "asset")):
        raise ValueError(f"store folder {asset!r} is not a valid view name ({_IDENTIFIER.pattern})")
    return asset


def _statements(text: str) -> list[str]:
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def assets_with_data(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir()
                  if p.is_dir() and not p.name.startswith(("_", ".")) and any(p.glob("*/*/*.parquet")))


# Every table of rows that did not make it, by the stage that set them aside.
REJECT_TABLES = {"metadata_rejects": "ingest", "imported_rejects": "imported", "conversation_rejects": "conversations"}


def _rejects_view(con: duckdb.DuckDBPyConnection, views: list[str]) -> None:
    """`rejects_by_reason`: one count per stage, dataset version and reason, over the reject tables
    that exist and have a reason column (an empty partition may have none)."""
    parts = []
    for table, stage in REJECT_TABLES.items():
        if table in views and "reason" in {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}:
            parts.append(f"SELECT '{stage}' AS stage, dataset, dataset_version, reason FROM {table}")
    if parts:
        _create(con, "CREATE OR REPLACE VIEW rejects_by_reason AS SELECT stage, dataset, dataset_version, reason, "
                f"count(*) AS records FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL "
                "ORDER BY dataset, stage, records DESC", views)


class CatalogError(RuntimeError):
    """A view or macro of the catalog that could not be built; the message names it and gives DuckDB's error."""


_CREATED = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:VIEW|MACRO)\s+(\w+)", re.IGNORECASE)
_MISSING_TABLE = re.compile(r"Table with name (\w+) does not exist")


def _not_there_yet(con: duckdb.DuckDBPyConnection, exc: duckdb.Error, stmt: str, present: list[str]) -> str | None:
    """Why `stmt` failed, when the cause is the one a young store has by design; None for any other cause.

    That cause is an asset the statement reads that has no rows yet: no data files (so no `<asset>` or
    `<asset>_all` view), or only empty partitions (kept with their lineage columns alone, so a column is
    missing). Derived views over it are then left out, and each `vd_raw_*` macro keeps its empty stub."""
    if isinstance(exc, duckdb.CatalogException):
        missing = _MISSING_TABLE.search(str(exc))
        if missing and missing.group(1).removesuffix("_all") not in present:  # <asset>_all: every version
            return f"asset {missing.group(1).removesuffix('_all')} has no data yet"
    elif isinstance(exc, duckdb.BinderException):
        read = [a for a in present if re.search(rf"\b{a}(?:_all)?\b", stmt)]
        empty = [a for a in read if con.execute(f"SELECT count(*) FROM {a}_all").fetchone() == (0,)]
        if empty:
            return f"asset {', '.join(empty)} has no rows yet"
    return None


def _create(con: duckdb.DuckDBPyConnection, stmt: str, present: list[str]) -> None:
    """Run one CREATE statement. One that reads an asset with no rows yet is skipped and logged (see
    `_not_there_yet`); any other failure raises `CatalogError` naming the view, since a catalog that
    silently lacks a view (a store whose columns no longer match the SQL, a broken template) is wrong."""
    created = _CREATED.search(stmt)
    name = created.group(1) if created else stmt.split("\n", 1)[0]
    try:
        con.execute(stmt)
    except (duckdb.CatalogException, duckdb.BinderException) as exc:
        reason = _not_there_yet(con, exc, stmt, present)
        if reason is None:
            raise CatalogError(f"catalog: {name} cannot be built: {exc}") from exc
        log.info("catalog: %s not built: %s", name, reason)
    except duckdb.Error as exc:
        raise CatalogError(f"catalog: {name} cannot be built: {exc}") from exc


def _fill(store: Path) -> dict[str, str]:
    if "'" in str(store):
        raise ValueError(f"store path {store} may not contain a quote")
    return {"store": store.as_posix()}


def _asset_views(con: duckdb.DuckDBPyConnection, store: Path, asset: str, present: list[str], sql_dir: Path,
                 only_all: bool = False) -> None:
    """asset_views.sql for one asset; `only_all`: just `<asset>_all` (every version, no pointer files read)."""
    pointers = f"_current/{asset}/*/*.json"
    if not any(store.glob(pointers)):  # data written, no pointer yet: the view is empty
        pointers = "_current/*/*/*.json"
    for stmt in _statements((sql_dir / "asset_views.sql").read_text()):
        if only_all and not re.search(r"VIEW\s+\$\{asset\}_all\b", stmt):
            continue
        _create(con, Template(stmt).substitute(_fill(store), asset=asset,
                                               pointers=f"{store.as_posix()}/{pointers}"), present)


def _sql_file(con: duckdb.DuckDBPyConnection, store: Path, name: str, present: list[str], sql_dir: Path) -> None:
    for stmt in _statements((sql_dir / name).read_text()):
        _create(con, Template(stmt).substitute(_fill(store)), present)


CATALOG_FILE = "catalog.duckdb"


def _has_rows(store: Path, asset: str) -> bool:
    return any(json.loads(p.read_text()).get("rows") for p in (store / "_current" / asset).glob("*/*.json"))


def catalog_inputs(store: Path) -> list[tuple[str, bool]]:
    """What decides the catalog's views: each asset with data files, and whether a current partition
    of it has rows (views over an asset with none are left out). The views read the current files
    when queried, so a new version of an asset already there changes nothing here."""
    store = Path(store)
    return [(a, _has_rows(store, a)) for a in assets_with_data(store)] if store.is_dir() else []


def fill_catalog(con: duckdb.DuckDBPyConnection, store: Path, sql_dir: Path = SQL_DIR) -> None:
    """Create or replace the catalog's views and macros in `con`. Raises `CatalogError` for a view that
    cannot be built, except one over an asset with no rows yet (left out, and logged at INFO)."""
    store = Path(store).resolve()
    _fill(store)
    if any((store / "_current").glob("*/*/*.json")):
        present = [view_name(a) for a in assets_with_data(store)]  # each named in SQL below
        _sql_file(con, store, "catalog.sql", present, sql_dir)
        for asset in present:
            _asset_views(con, store, asset, present, sql_dir)
        _rejects_view(con, present)
        for name in ("lineage.sql", "version_diff.sql"):  # version_diff: macros, stubs stand in
            _sql_file(con, store, name, present, sql_dir)


def build_catalog(store: Path, catalog_path: Path | None = None, sql_dir: Path = SQL_DIR) -> Path:
    """Create or refresh `<store>/catalog.duckdb` (fill_catalog); returns its path."""
    store = Path(store).resolve()
    catalog_path = Path(catalog_path or store / CATALOG_FILE)
    _fill(store)
    con = duckdb.connect(str(catalog_path))
    try:
        fill_catalog(con, store, sql_dir)
    finally:
        con.close()
    return catalog_path


# What version_diff.sql reads: the versions (source_records) and the assets it compares.
VERSION_DIFF_INPUTS = ("source_records", "grouped_metadata", "generated_conversations", "filtered_conversations",
                       "selected_subset")


def version_diff_connection(store: Path, sql_dir: Path = SQL_DIR) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding version_diff.sql's macros over `store` and the `<asset>_all` views
    they read, built as in the catalog: lib/versions.py queries it. In memory, so the CLI, the viewer
    and the export need no catalog file, never race its rebuild, and skip the views the diff never reads."""
    store = Path(store).resolve()
    _fill(store)
    con = duckdb.connect()
    try:
        present = [view_name(a) for a in assets_with_data(store) if a in VERSION_DIFF_INPUTS] if store.is_dir() else []
        for asset in present:
            _asset_views(con, store, asset, present, sql_dir, only_all=True)
        _sql_file(con, store, "version_diff.sql", present, sql_dir)
    except BaseException:
        con.close()
        raise
    return con


def view_names(catalog_path: Path) -> list[str]:
    con = duckdb.connect(str(catalog_path), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
    finally:
        con.close()



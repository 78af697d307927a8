"""Build the DuckDB catalog: views over the Parquet store, from the templates in `sql/`.

The catalog holds views only, so it is rebuilt in a second and never blocks a writer.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from string import Template

import duckdb

from .storage import safe_name

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
        con.execute("CREATE OR REPLACE VIEW rejects_by_reason AS SELECT stage, dataset, dataset_version, reason, "
                    f"count(*) AS records FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL "
                    "ORDER BY dataset, stage, records DESC")


_MISSING_TABLE = re.compile(r"Table with name (\w+) does not exist")


def _execute_unless_missing(con: duckdb.DuckDBPyConnection, stmt: str, present: list[str]) -> None:
    """Run `stmt`. A statement that reads an asset with no data yet is skipped (its stub stays); one
    that does not bind to the data there is (a store written by an older layout: a column missing)
    is skipped with a warning naming it; any other error is raised."""
    try:
        con.execute(stmt)
    except duckdb.CatalogException as exc:
        missing = _MISSING_TABLE.search(str(exc))
        if not missing or missing.group(1).removesuffix("_all") in present:  # <asset>_all: every version
            raise
    except duckdb.BinderException as exc:
        name = re.search(r"(?:VIEW|MACRO)\s+(\w+)", stmt)
        warnings.warn(f"catalog: {name.group(1) if name else 'a statement'} not built: {exc}", UserWarning, stacklevel=2)


def build_catalog(store: Path, catalog_path: Path | None = None, sql_dir: Path = SQL_DIR) -> Path:
    """Create or refresh `<store>/catalog.duckdb`; returns its path."""
    store = Path(store).resolve()
    catalog_path = Path(catalog_path or store / "catalog.duckdb")
    if "'" in str(store):
        raise ValueError(f"store path {store} may not contain a quote")
    fill = {"store": store.as_posix()}
    con = duckdb.connect(str(catalog_path))
    try:
        if any((store / "_current").glob("*/*/*.json")):
            for stmt in _statements((sql_dir / "catalog.sql").read_text()):
                con.execute(Template(stmt).substitute(fill))
            template = (sql_dir / "asset_views.sql").read_text()
            for asset in assets_with_data(store):
                pointers = f"_current/{view_name(asset)}/*/*.json"
                if not any(store.glob(pointers)):  # data written, no pointer yet: the view is empty
                    pointers = "_current/*/*/*.json"
                for stmt in _statements(template):
                    con.execute(Template(stmt).substitute(fill, asset=view_name(asset),
                                                          pointers=f"{store.as_posix()}/{pointers}"))
            present = assets_with_data(store)
            _rejects_view(con, present)
            for name in ("lineage.sql", "version_diff.sql"):  # version_diff: macros, stubs stand in
                for stmt in _statements((sql_dir / name).read_text()):
                    _execute_unless_missing(con, Template(stmt).substitute(fill), present)
    finally:
        con.close()
    return catalog_path


def view_names(catalog_path: Path) -> list[str]:
    con = duckdb.connect(str(catalog_path), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
    finally:
        con.close()



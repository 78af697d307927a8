"""The store, read-only, for the viewer: the product's catalog (lib/catalog.py, the same SQL) built
into a private file, and image files found the way ingestion finds them.

The catalog is private because DuckDB lets one process write a database file only when no other
process has it open: a viewer holding `<store>/catalog.duckdb` would make the next
`visit-assets run` or `catalog` fail. Its views read the Parquet files at query time, so new
versions show up at once; only an asset appearing for the first time needs a rebuild (`refresh`,
checked on the first request after any write).

A few answers are costly at scale and change only with the store (the browse page's filter choices
and counts): each cursor carries a cache for the store's current state, the partition pointers
under `<store>/_current` (their names, inodes, sizes and mtimes, which every write changes: a
pointer is replaced by rename) and the catalog build. A pointer written since means a new cache.
The browse page's tables (queries.BrowseTables: its rows copied once, with their turn text
lower-cased, and their positions) follow only the pointers of the assets they copy, and are
written into the private catalog: so it is opened read-write (no other process opens it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

import duckdb

from visit_assets.lib.catalog import assets_with_data, build_catalog, view_names
from visit_assets.lib.metadata.dataset import DatasetError, check_dataset_name, read_layout
from visit_assets.lib.metadata.image_store import locate, read_bytes
from visit_assets.lib.metadata.paths import UnsafePath

from .queries import BROWSE_ASSETS, BrowseTables, Db, browse_tables


class Reader:
    def __init__(self, store: Path, datasets: Path):
        self.store, self.datasets = Path(store).resolve(), Path(datasets).resolve()
        self._dir = Path(tempfile.mkdtemp(prefix="visit-viewer-"))
        self._lock = threading.Lock()
        self._built_for: tuple[str, ...] | None = None
        self._connections: list[duckdb.DuckDBPyConnection] = []  # the newest last; old ones may still serve
        self._views: frozenset[str] = frozenset()
        self._cache: tuple[tuple, dict] = ((), {})  # (store state, answers kept for it)
        self._browse: tuple[tuple, BrowseTables | None] = ((), None)  # (state of BROWSE_ASSETS, its tables)
        self.refresh()

    def _assets(self) -> tuple[str, ...]:
        return tuple(assets_with_data(self.store)) if self.store.is_dir() else ()

    def refresh(self) -> None:
        """Rebuild the private catalog if the assets with data are not those it was built for."""
        assets = self._assets()
        with self._lock:
            if assets == self._built_for:
                return
            path = build_catalog(self.store, self._dir / f"catalog-{len(self._connections)}.duckdb")
            self._views = frozenset(view_names(path))
            # Read-write: the browse tables are written into it (queries.browse_tables).
            self._connections.append(duckdb.connect(str(path)))
            self._built_for = assets

    def state(self) -> tuple:
        """The store's state: every partition pointer (path, inode, size, mtime) and the catalog build.
        A few milliseconds for the 700 pointers of the 118k-image store."""
        found = []
        pointers = self.store / "_current"
        if pointers.is_dir():
            for asset in os.scandir(pointers):
                if asset.is_dir():
                    for dataset in os.scandir(asset.path):
                        if dataset.is_dir():
                            for f in os.scandir(dataset.path):
                                if f.name.startswith("."):  # a pointer being written (renamed when done)
                                    continue
                                try:
                                    st = f.stat()
                                except FileNotFoundError:
                                    continue
                                found.append((f.path, st.st_ino, st.st_size, st.st_mtime_ns))
        return len(self._connections), tuple(sorted(found))

    def db(self) -> Db:
        """A cursor of its own (DuckDB connections are not shared between threads); close it after use."""
        state = self.state()
        if state != self._cache[0]:  # a write since: an asset with its first data needs its view built
            self.refresh()
            state = self.state()
        # The pointers of the assets the browse tables copy: <store>/_current/<asset>/<dataset>/<file>.
        browsed = (state[0], tuple(p for p in state[1] if p[0].rsplit(os.sep, 3)[-3] in BROWSE_ASSETS))
        with self._lock:
            if self._cache[0] != state:
                self._cache = (state, {})
            if self._browse[0] != browsed:
                previous = self._browse[1]
                self._browse = (browsed, BrowseTables(previous.generation + 1, previous.lock, previous.users)
                                if previous else BrowseTables(0))
            tables = self._browse[1]
            assert tables is not None  # made above for this state
            tables.users[tables.generation] = tables.users.get(tables.generation, 0) + 1
            return Db(self._connections[-1].cursor(), self._views, self._cache[1], tables, self._release)

    def _release(self, tables: BrowseTables) -> None:
        """A Db of `tables` closed: one user fewer (at none, a later build may drop its tables)."""
        with self._lock:
            left = tables.users.get(tables.generation, 0) - 1
            if left > 0:
                tables.users[tables.generation] = left
            else:
                tables.users.pop(tables.generation, None)

    def prepare(self) -> float:
        """Build the browse tables of the current state now (else the first browse page after a
        change builds them); how long their build took."""
        with contextlib.closing(self.db()) as db:
            tables = browse_tables(db)
            assert tables is not None and tables.built_s is not None  # a reader's Db has browse tables, built now
            return tables.built_s

    @property
    def catalog_bytes(self) -> int:
        """The size of the private catalog's folder (its files, the browse tables in them)."""
        return sum(f.stat().st_size for f in self._dir.iterdir() if f.is_file())

    @property
    def browse_built_s(self) -> float | None:
        """How long the current browse tables took to build (None: not built yet)."""
        return self._browse[1].built_s if self._browse[1] else None

    def image_file(self, dataset: str, image_key: str) -> Path | bytes:
        """The file of a registered image key, inside its dataset's image folder (symlinks resolved),
        or the bytes of a shard member (image_store), or FileNotFoundError: never a path that
        leaves that folder."""
        try:
            images = read_layout(self.datasets / check_dataset_name(dataset)).images_dir
            where = locate(images, image_key)
            if where.member is not None:
                return read_bytes(images, image_key)
        except (DatasetError, UnsafePath, OSError) as e:
            raise FileNotFoundError(str(e)) from None
        if not where.path.is_file():
            raise FileNotFoundError(f"{image_key} is not in {images}")
        return where.path

    def close(self) -> None:
        with self._lock:
            for con in self._connections:
                con.close()
            self._connections.clear()
        shutil.rmtree(self._dir, ignore_errors=True)

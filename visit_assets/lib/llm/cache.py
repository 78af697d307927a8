"""Persistent LLM response cache: one SQLite file in WAL mode, shared by processes and threads.

Keys are `LLMRequest.cache_key(model)`: a content hash of model identity (name + weights),
messages, sampling parameters (seed included) and the output constraint. Each finished result is
written (and committed) as soon as it finishes, so a killed run keeps everything it finished.
Lookups are batched: one `SELECT ... WHERE key IN (...)` per chunk.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from visit_assets.lib.llm.budget import Budget, Spend
from visit_assets.lib.llm.types import LLMResult

T = TypeVar("T")

LOOKUP_CHUNK = 900  # below SQLite's historical 999 bound-parameter limit
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_responses (
    key        TEXT PRIMARY KEY,
    model      TEXT NOT NULL,
    status     TEXT NOT NULL,
    record     TEXT NOT NULL,
    created_at REAL NOT NULL
) WITHOUT ROWID
"""
# What each run has sent (budget.py): one row per run, shared by its steps and processes.
_SPEND_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_spend (
    scope      TEXT PRIMARY KEY,
    requests   INTEGER NOT NULL,
    tokens_in  INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID
"""


def _entry(result: LLMResult) -> tuple[str, str, dict, float]:
    """(model label, status, record, time): what either cache stores per answer."""
    return result.model.label() if result.model else "", result.status, result.to_record(), time.time()


class _Cache:
    """`get` / `put` in terms of a cache's batch `get_many` / `put_many`, and the spend ledger in
    terms of a cache's atomic `_transact(scope, fn)` (fn: Spend -> (new Spend, value))."""

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        raise NotImplementedError

    def put_many(self, results: Mapping[str, LLMResult]) -> None:
        raise NotImplementedError

    def get(self, key: str) -> dict | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, result: LLMResult) -> None:
        """Store one finished result at once."""
        self.put_many({key: result})

    def _transact(self, scope: str, fn: Callable[[Spend], tuple[Spend, T]]) -> T:
        raise NotImplementedError

    def reserve(self, scope: str, budget: Budget, wanted: int, in_flight: int = 1) -> tuple[int, Spend]:
        """Count up to `wanted` requests as sent by run `scope`, as its budget allows: (granted, spend after)."""

        def take(spend: Spend) -> tuple[Spend, tuple[int, Spend]]:
            n = budget.grant(spend, wanted, in_flight)
            after = spend.plus(requests=n)
            return after, (n, after)

        return self._transact(scope, take)

    def record(self, scope: str, requests: int = 0, tokens_in: int = 0, tokens_out: int = 0) -> Spend:
        """Add to run `scope`'s spend (requests < 0: reserved ones given back, never sent)."""

        def add(spend: Spend) -> tuple[Spend, Spend]:
            after = spend.plus(requests, tokens_in, tokens_out)
            return after, after

        return self._transact(scope, add)

    def spend(self, scope: str) -> Spend:
        return self._transact(scope, lambda s: (s, s))


class LLMCache(_Cache):
    """Thread-safe handle on the cache file; reopens itself after a fork."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def __repr__(self) -> str:
        return f"LLMCache({str(self.path)!r})"

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        LLMCache.__init__(self, state["path"])

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        for attempt in range(50):  # switching to WAL needs a moment of exclusivity when many processes open at once
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(_SCHEMA)
                conn.execute(_SPEND_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.05 * (attempt + 1))
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not put {self.path} in WAL mode (got {mode!r})")
        self._conn, self._pid = conn, os.getpid()
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        """Stored records for the keys that are present (absent keys are simply missing)."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict] = {}
        if not keys:
            return out
        with self._lock:
            conn = self._connect()
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = keys[start : start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, record in conn.execute(f"SELECT key, record FROM llm_responses WHERE key IN ({marks})", chunk):
                    out[key] = json.loads(record)
        return out

    def put_many(self, results: Mapping[str, LLMResult]) -> None:
        rows = []
        for key, r in results.items():
            model, status, record, created = _entry(r)
            rows.append((key, model, status, json.dumps(record, ensure_ascii=False), created))
        if not rows:
            return
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO llm_responses VALUES (?, ?, ?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _transact(self, scope: str, fn: Callable[[Spend], tuple[Spend, T]]) -> T:
        with self._lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")  # one writer at a time over every process: reservations add up
            try:
                row = conn.execute("SELECT requests, tokens_in, tokens_out FROM llm_spend WHERE scope = ?",
                                   (scope,)).fetchone()
                before = Spend(*row) if row else Spend()
                after, value = fn(before)
                if after != before:
                    conn.execute("INSERT OR REPLACE INTO llm_spend VALUES (?, ?, ?, ?, ?)",
                                 (scope, after.requests, after.tokens_in, after.tokens_out, time.time()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return value

    def count(self) -> int:
        with self._lock:
            return self._connect().execute("SELECT COUNT(*) FROM llm_responses").fetchone()[0]

    def keys(self) -> set[str]:
        with self._lock:
            return {k for (k,) in self._connect().execute("SELECT key FROM llm_responses")}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


class NullCache(_Cache):
    """No persistence (benchmarks, dry runs); the spend ledger lives in this process only."""

    path = None

    def __init__(self) -> None:
        self._spend: dict[str, Spend] = {}
        self._lock = threading.Lock()

    def _transact(self, scope: str, fn: Callable[[Spend], tuple[Spend, T]]) -> T:
        with self._lock:
            self._spend[scope], value = fn(self._spend.get(scope, Spend()))
        return value

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        return {}

    def put(self, key: str, result: LLMResult) -> None:
        pass

    def put_many(self, results: Mapping[str, LLMResult]) -> None:
        pass

    def close(self) -> None:
        pass


class FileCache(_Cache):
    """The same cache as one small JSON file per answer, for a store shared by several hosts.

    SQLite's WAL needs every process on one host; a network filesystem (NFS, EFS, Filestore) does
    give atomic renames within a folder, so each answer is written aside and renamed into place:
    no locks, no server, and a step retried on another node still finds every finished answer.
    Layout: `<folder>/<key[:2]>/<key>.json`. Costs one file open per lookup: fine for the
    thousands of requests of a step, and the answers are what is expensive. The runs' spend
    ledger is `<folder>/_spend/<run id>.json`, updated under a file lock (flock).
    """

    def __init__(self, folder: str | os.PathLike[str]):
        self.path = Path(folder)

    def __repr__(self) -> str:
        return f"FileCache({str(self.path)!r})"

    def _file(self, key: str) -> Path:
        if not key.isalnum():  # keys are hex content hashes; anything else must not become a path
            raise ValueError(f"cache key must be alphanumeric, got {key!r}")
        return self.path / key[:2] / f"{key}.json"

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for key in dict.fromkeys(keys):
            path = self._file(key)
            try:
                out[key] = json.loads(path.read_text(encoding="utf-8"))["record"]
            except OSError:  # not there yet, or ESTALE on NFS while another writer renames it: a miss
                pass
        return out

    def put_many(self, results: Mapping[str, LLMResult]) -> None:
        for key, r in results.items():
            target = self._file(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            body = dict(zip(("model", "status", "record", "created_at"), _entry(r), strict=True))
            tmp = target.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(body, fh, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)

    def _transact(self, scope: str, fn: Callable[[Spend], tuple[Spend, T]]) -> T:
        """One JSON file per run under `_spend/`, updated under an exclusive lock on its lock file."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", scope):
            raise ValueError(f"a spend scope must be a run id (letters, digits, '_', '.', '-'), got {scope!r}")
        folder = self.path / "_spend"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{scope}.json"
        with open(folder / f"{scope}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                before = Spend(**json.loads(target.read_text())) if target.exists() else Spend()
            except (ValueError, TypeError) as exc:
                raise RuntimeError(f"the spend ledger {target} is unreadable ({exc}); delete it to reset "
                                   "this run's budget") from exc
            after, value = fn(before)
            if after != before:
                tmp = target.with_name(f".{scope}.{os.getpid()}.{threading.get_ident()}.tmp")
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(after.__dict__, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
        return value

    def count(self) -> int:
        return sum(1 for _ in self.path.glob("??/*.json"))

    def keys(self) -> set[str]:
        return {p.stem for p in self.path.glob("??/*.json")}

    def close(self) -> None:
        pass


def open_cache(location: str | os.PathLike[str]) -> LLMCache | FileCache:
    """A path ending in a slash, or an existing folder, is a FileCache; anything else SQLite."""
    text = os.fspath(location)
    return FileCache(text) if text.endswith(("/", os.sep)) or Path(text).is_dir() else LLMCache(text)

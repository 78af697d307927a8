"""What each page shows, as SQL over the catalog's views (sql/*.sql). Pure: DuckDB only, no Dagster.

Every query runs in DuckDB and returns only the rows a page shows (LIMIT/OFFSET), never a table.
The browse page reads a copy of its rows that it writes once per state of the store into the
viewer's private catalog (BrowseTables), so that it does not sort or decode them all on each load.
An asset that has no data yet has no view in the catalog: each query then reads an empty stand-in
with the columns it uses (a CTE of the same name, which shadows the view), so a page of a
half-built store shows what there is instead of failing.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb

# `_data_bytes` is the exporter's own serialisation of llava.json; it is imported rather than made
# public because export.py's source is part of visit_export's code version.
from visit_assets.lib.instructify.export import _data_bytes, to_llava

PAGE_SIZE = 25
EXAMPLES = 3  # example rows per reject reason on the overview
STAGE_ORDER = ("ingest", "generation", "filters", "imported")  # the order rows meet them
STATUSES = ("rejected", "generated", "kept", "selected", "not selected")
SCORES = ("clip", "length", "reward", "judge")

_V = "NULL::VARCHAR"
_TURNS = 'NULL::STRUCT("from" VARCHAR, "value" VARCHAR)[]'
_BOXES = 'NULL::STRUCT("label" VARCHAR, x1 DOUBLE, y1 DOUBLE, x2 DOUBLE, y2 DOUBLE)[]'
_CONV = f"{_V} AS dataset, {_V} AS dataset_version, {_V} AS conversation_id, {_V} AS image_id, {_V} AS image_key, " \
        f"{_V} AS recipe"
_GEN = f"{_CONV}, {_V} AS prompt_id, NULL::BIGINT AS prompt_version, NULL::BIGINT AS iteration, {_V} AS llm_model, " \
       f"{_V} AS llm_weights, {_TURNS} AS turns"
# The columns each query reads, for assets not materialized yet.
STUBS = {
    "current_partitions": f"{_V} AS asset, {_V} AS dataset, NULL::INTEGER AS shard, {_V} AS dataset_version, "
                          f"NULL::BIGINT AS rows, {_V} AS written_at",
    "dataset_versions": f"{_V} AS dataset, {_V} AS dataset_version, {_V} AS ingested_at, "
                        "NULL::BIGINT AS source_records, NULL::BIGINT AS loader_rejects",
    "source_records": f"{_V} AS dataset, {_V} AS image_id, {_V} AS image_key, {_V} AS dataset_version",
    "grouped_metadata": f"{_V} AS dataset, {_V} AS dataset_version, {_V} AS image_id, {_V} AS image_key, "
                        f"NULL::BIGINT AS width, NULL::BIGINT AS height, NULL::VARCHAR[] AS captions, {_BOXES} AS boxes, "
                        "NULL::STRUCT(question VARCHAR, answer VARCHAR)[] AS qa, NULL::VARCHAR[] AS ocr, "
                        "NULL::VARCHAR[] AS sources, NULL::VARCHAR[] AS source_record_ids, NULL::INTEGER AS shard",
    "image_descriptions": f"{_V} AS dataset, {_V} AS image_id, {_V} AS description",
    "image_clusters": f"{_V} AS dataset, {_V} AS image_id, NULL::BIGINT AS cluster, {_V} AS model",
    "image_facts": f"{_V} AS dataset, {_V} AS image_id, {_V} AS fact_id, {_V} AS kind, {_V} AS text, "
                   f"{_V} AS derived_from, {_V} AS note, {_V} AS model",
    "metadata_rejects": f"{_V} AS dataset, {_V} AS dataset_version, {_V} AS image_id, {_V} AS image_key, "
                        f"{_V} AS record_id, {_V} AS reason, {_V} AS detail",
    "imported_rejects": f"{_V} AS dataset, {_V} AS dataset_version, {_V} AS source, NULL::BIGINT AS item_index, "
                        f"{_V} AS reason, {_V} AS detail, {_V} AS metadata_qc",
    "conversation_attempts": f"{_GEN}, {_V} AS status, {_V} AS reason, {_V} AS detail",
    "generated_conversations": _GEN,
    "filtered_conversations": _GEN,
    "conversation_rejects": f"{_GEN}, {_V} AS reason",
    "imported_conversations": f"{_CONV}, {_V} AS source, {_TURNS} AS turns",
    "selection_ranking": f"{_V} AS dataset, {_V} AS conversation_id, NULL::BIGINT AS cluster, NULL::DOUBLE AS \"F\", "
                         "NULL::BIGINT AS rank, NULL::BOOLEAN AS selected, NULL::VARCHAR AS outcome",
    "visit_export": f"{_V} AS dataset, {_V} AS conversation_id, {_V} AS export_version",
    "quality_scores": f"{_V} AS dataset, {_V} AS conversation_id, "
                      + ", ".join(f"NULL::DOUBLE AS {s}_raw, NULL::DOUBLE AS {s}_scaled, {_V} AS {s}_model"
                                  for s in SCORES),
}


# The views the browse page's rows come from: its tables (BrowseTables) follow their pointers only.
BROWSE_ASSETS = ("generated_conversations", "imported_conversations", "conversation_attempts")


@dataclass
class BrowseTables:
    """The browse page's own copy of `c` (below) for one state of BROWSE_ASSETS, as two tables in the
    viewer's private catalog, built once on first use (browse_tables):

    - `rows`: every column of `c` and `text`, the turns as the text filter reads them (lower-cased,
      joined), so that a text search scans one plain column instead of decoding and lower-casing
      every conversation's turns from Parquet on each load;
    - `keys`: KEY, dataset_version, `rid` (the row's rowid in `rows`, by which the page's rows are
      read back) and `pos`, the row's place in ORDER, so that a deep page is a range of positions
      instead of a sort of every row to skip the pages before it.

    The generation numbers the tables: a newer state gets new ones, and older ones are dropped once no
    open Db reads them. A Reader's generations share `lock` (one build at a time: two builds would
    drop the same old tables) and `users` (open Dbs per generation, counted by the Reader)."""

    generation: int
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    users: dict[int, int] = field(default_factory=dict, repr=False)
    built_s: float | None = None  # how long the build took; None until built

    @property
    def rows(self) -> str:
        return f"browse_rows_{self.generation}"

    @property
    def keys(self) -> str:
        return f"browse_keys_{self.generation}"


@dataclass(frozen=True)
class Db:
    """A cursor on the catalog and the names of the views it holds; `cache`, when given, keeps
    answers that only change with the store (the Reader hands out one per store state); `browse`,
    when given, the browse tables of the current state (else the browse page reads the views)."""

    con: duckdb.DuckDBPyConnection
    views: frozenset[str]
    cache: dict | None = None
    browse: BrowseTables | None = None
    release: Callable[[BrowseTables], None] | None = None  # the Reader's, when it counts this Db as a user

    def cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        if self.cache is None:
            return compute()
        if key not in self.cache:
            if len(self.cache) >= 1000:  # filters come from the query string: keep it bounded
                self.cache.clear()
            self.cache[key] = compute()
        return self.cache[key]

    def sql(self, body: str) -> str:
        """`body` with an empty stand-in for every view it reads that the catalog does not have."""
        missing = [v for v in STUBS if v not in self.views and re.search(rf"\b{v}\b", body)]
        if not missing:
            return body
        ctes = ", ".join(f"{v} AS (SELECT {STUBS[v]} WHERE false)" for v in missing)
        if body.lstrip().upper().startswith("WITH "):
            return f"WITH {ctes}, {body.lstrip()[5:]}"
        return f"WITH {ctes} {body}"

    def rows(self, body: str, params: list | dict | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(self.sql(body), params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def one(self, body: str, params: list | dict | None = None) -> dict[str, Any] | None:
        found = self.rows(body, params)
        return found[0] if found else None

    def close(self) -> None:
        self.con.close()
        if self.release is not None and self.browse is not None:
            release = self.release
            object.__setattr__(self, "release", None)  # (a frozen dataclass) closed twice counts once
            release(self.browse)


# --- the dataset page ----------------------------------------------------------------------------

def datasets(db: Db) -> list[str]:
    """Datasets that were ingested (the pointers say so: no data file is read)."""
    return [r["dataset"] for r in db.rows(
        "SELECT DISTINCT dataset FROM current_partitions WHERE asset = 'source_records' ORDER BY 1")]


def dataset_versions(db: Db, dataset: str) -> list[dict]:
    return db.rows("SELECT * FROM dataset_versions WHERE dataset = ? ORDER BY ingested_at DESC", [dataset])


def version_count(db: Db, dataset: str) -> int:
    """How many versions of the dataset were ingested. Kept per store state (Db.cached): the image
    page asks on every load, and a new version rewrites partition pointers."""
    return db.cached(("version_count", dataset), lambda: db.rows(
        "SELECT count(*) AS n FROM dataset_versions WHERE dataset = ?", [dataset])[0]["n"])


def asset_rows(db: Db, dataset: str) -> list[dict]:
    """Current rows per asset, from the partition pointers (they record their row counts)."""
    return db.rows("""
        SELECT asset, sum(rows)::BIGINT AS rows, count(*) AS partitions,
               list(DISTINCT dataset_version ORDER BY dataset_version) FILTER (WHERE dataset_version IS NOT NULL)
                 AS dataset_versions, max(written_at) AS written_at
        FROM current_partitions WHERE dataset = ? GROUP BY asset ORDER BY asset""", [dataset])


REJECTS = """
    SELECT 'ingest' AS stage, dataset, dataset_version, reason, image_id, image_key, record_id AS item, detail
    FROM metadata_rejects
    UNION ALL
    SELECT 'generation', dataset, dataset_version, reason, image_id, image_key,
           prompt_id || ' #' || iteration, detail
    FROM conversation_attempts WHERE status = 'rejected'
    UNION ALL
    SELECT 'filters', dataset, dataset_version, reason, image_id, image_key, conversation_id,
           recipe || ' / ' || prompt_id
    FROM conversation_rejects
    UNION ALL
    SELECT 'imported', dataset, dataset_version, reason, NULL, NULL, source || ' #' || item_index,
           coalesce(metadata_qc, left(detail, 200))
    FROM imported_rejects"""


def rejects(db: Db, dataset: str, examples: int = EXAMPLES) -> list[dict]:
    """Per stage and reason: how many rows were set aside, and the first few of them."""
    return db.rows(f"""
        WITH r AS ({REJECTS}),
        n AS (SELECT *, row_number() OVER (PARTITION BY stage, reason ORDER BY image_key, item) AS k
              FROM r WHERE dataset = ?)
        SELECT stage, reason, count(*) AS records,
               list({{'image_id': image_id, 'image_key': image_key, 'item': item, 'detail': detail}} ORDER BY k)
                 FILTER (WHERE k <= ?) AS examples
        FROM n GROUP BY stage, reason
        ORDER BY list_position(?, stage), records DESC, reason""", [dataset, examples, list(STAGE_ORDER)])


def prompt_types(db: Db, dataset: str) -> list[dict]:
    """Per recipe and prompt type: attempts, accepted, kept by the filters, selected."""
    return db.rows("""
        WITH a AS (SELECT recipe, prompt_id, count(*) AS attempted,
                          count(*) FILTER (WHERE status = 'accepted') AS accepted
                   FROM conversation_attempts WHERE dataset = ? AND status IN ('accepted', 'rejected') GROUP BY ALL),
        k AS (SELECT recipe, prompt_id, count(*) AS kept FROM filtered_conversations WHERE dataset = ? GROUP BY ALL),
        s AS (SELECT f.recipe, f.prompt_id, count(*) AS selected
              FROM filtered_conversations f JOIN selection_ranking s USING (dataset, conversation_id)
              WHERE f.dataset = ? AND s.selected GROUP BY ALL)
        SELECT recipe, prompt_id, attempted, accepted, coalesce(kept, 0) AS kept, coalesce(selected, 0) AS selected
        FROM a LEFT JOIN k USING (recipe, prompt_id) LEFT JOIN s USING (recipe, prompt_id)
        ORDER BY recipe, attempted DESC, prompt_id""", [dataset] * 3)


# --- conversations: the browse page and each image's --------------------------------------------

# One row per generated or imported conversation and per attempt rejected before it became one,
# with where it ended: rejected (and why, at which stage), generated (not filtered yet), kept by the
# filters, selected or not (and why not), exported.
#
# At COCO scale the joined assets hold half a million rows each, and a hash join reads its side in
# full. So each query reads them in two steps: first the rows of `c` a page shows, found on their
# own columns (narrow: no turns, no join unless a filter needs the joined status); then those rows
# only, the other assets read for their conversation ids alone (`side`: an IN list, which DuckDB
# pushes into the Parquet scans to skip row groups and applies before the joins; of those assets
# only the id and the columns shown are read). Parameters are named ($name).
def _c(where: str = "true", table: str | None = None) -> str:
    """`c`: conversations and rejected attempts on their own columns, `where` applied to them; read
    from `table` (BrowseTables.rows, which also has `text` for `where` to use) when given, each row
    then with its rowid there (`rid`: how the page's rows are read back, _rows_by_rowid)."""
    if table:
        return f"c AS (SELECT * EXCLUDE (text), rowid AS rid FROM {table} WHERE {where})"
    return f"""
    c AS (
      SELECT * FROM (
        SELECT dataset, dataset_version, conversation_id, image_id, image_key, recipe, prompt_id, prompt_version,
               iteration, llm_model, llm_weights, turns, 'generation' AS origin, NULL AS attempt_reason,
               NULL AS detail
        FROM generated_conversations
        UNION ALL
        SELECT dataset, dataset_version, conversation_id, image_id, image_key, recipe, source, NULL, NULL, NULL,
               NULL, turns, 'imported', NULL, NULL
        FROM imported_conversations
        UNION ALL
        SELECT dataset, dataset_version, NULL, image_id, image_key, recipe, prompt_id, prompt_version, iteration,
               llm_model, llm_weights, NULL, 'attempt', reason, detail
        FROM conversation_attempts WHERE status = 'rejected')
      WHERE {where})"""


def conversations_sql(where: str = "true", side: str = "true", table: str | None = None, c: str | None = None) -> str:
    """WITH c, conversations: `c` filtered by `where` (read from `table` when given; or `c`, the CTE
    itself), the joined assets read only where `side` holds (a condition on their dataset and
    conversation_id)."""
    return f"""
    WITH {c or _c(where, table)},
    conversations AS (
      SELECT c.* EXCLUDE (attempt_reason),
             CASE WHEN c.origin = 'attempt' OR r.reason IS NOT NULL THEN 'rejected'
                  WHEN s.selected THEN 'selected'
                  WHEN s.outcome IS NOT NULL THEN 'not selected'
                  WHEN c.origin = 'generation' AND f.conversation_id IS NULL THEN 'generated'
                  ELSE 'kept' END AS status,
             coalesce(c.attempt_reason, r.reason, CASE WHEN NOT s.selected THEN s.outcome END) AS reason,
             CASE WHEN c.origin = 'attempt' THEN 'generation' WHEN r.reason IS NOT NULL THEN 'filters'
                  WHEN s.outcome IS NOT NULL THEN 'selection' END AS stage,
             s.cluster, s."F" AS f_score, s.rank, e.export_version
      FROM c
      LEFT JOIN (SELECT dataset, conversation_id, reason FROM conversation_rejects WHERE {side}) r
        ON r.dataset = c.dataset AND r.conversation_id = c.conversation_id
      LEFT JOIN (SELECT dataset, conversation_id FROM filtered_conversations WHERE {side}) f
        ON f.dataset = c.dataset AND f.conversation_id = c.conversation_id
      LEFT JOIN (SELECT dataset, conversation_id, cluster, "F", rank, selected, outcome FROM selection_ranking
                 WHERE {side}) s
        ON s.dataset = c.dataset AND s.conversation_id = c.conversation_id
      LEFT JOIN (SELECT dataset, conversation_id, export_version FROM visit_export WHERE {side}) e
        ON e.dataset = c.dataset AND e.conversation_id = c.conversation_id)"""


CONVERSATIONS = conversations_sql()  # everything (what the catalog user would write)
ORDER = "ORDER BY dataset, image_key, recipe, iteration NULLS LAST, conversation_id NULLS FIRST, prompt_id, origin"
# What tells the rows of `c` apart (the sort columns, and the image).
KEY = ("origin", "dataset", "image_id", "image_key", "recipe", "prompt_id", "iteration", "conversation_id")
TURN_TEXT = "lower(array_to_string(list_transform(turns, t -> t.\"value\"), chr(10)))"

# Browse filters: the query-string name and its condition.
FILTERS = {"dataset": "dataset = $dataset", "version": "dataset_version = $version", "recipe": "recipe = $recipe",
           "prompt": "prompt_id = $prompt", "status": "status = $status", "reason": "reason = $reason",
           "text": f"contains({TURN_TEXT}, lower($text))"}
# The text filter on BrowseTables.rows: the same test, on TURN_TEXT computed when the table was built.
TABLE_FILTERS = {**FILTERS, "text": "contains(text, lower($text))"}
JOINED = ("status", "reason")  # filters on what the joined assets say; the others are on c's own columns
SCORED = ", ".join(f"{{'name': '{s}', 'raw': q.{s}_raw, 'scaled': q.{s}_scaled, 'model': q.{s}_model}}"
                   for s in SCORES)
SCORE_COLUMNS = ", ".join(f"{s}_raw, {s}_scaled, {s}_model" for s in SCORES)


def _in(column: str, values: list, name: str, params: dict) -> str:
    """`column IN ($name0, ...)` with the values as parameters (constants DuckDB pushes into a scan)."""
    values = list(dict.fromkeys(values))
    if not values:
        return "false"
    params.update({f"{name}{i}": v for i, v in enumerate(values)})
    return f"{column} IN ({', '.join(f'${name}{i}' for i in range(len(values)))})"


def _key(row: dict) -> tuple:
    return tuple(row[k] for k in KEY)


def _rows_of(db: Db, keys: list[dict], scores: bool = False, table: str | None = None) -> list[dict]:
    """The whole rows (turns, status, scores...) of the rows of `c` named by `keys`, in their order;
    `c` read from `table` (BrowseTables.rows) when given, else from the views.

    The rows are read by range of image_key, per dataset: a page is consecutive in that order, and a
    range is a filter DuckDB applies inside the Parquet scan, before it decodes the turns (an IN list
    is only used there to skip row groups, and the turns of every row would be decoded). Keys that
    carry their turns (a text filter has read them already) have the rest read without them."""
    if table:
        return _rows_by_rowid(db, keys, scores, table)
    found = []
    carried = bool(keys) and "turns" in keys[0]
    exclude = "EXCLUDE (turns)" if carried else ""
    for dataset in dict.fromkeys(k["dataset"] for k in keys):
        mine = [k for k in keys if k["dataset"] == dataset]
        params: dict = {"dataset": dataset}
        where = ["dataset = $dataset"]
        named = [k["image_key"] for k in mine if k["image_key"] is not None]
        if len(named) == len(mine):
            where.append("image_key BETWEEN $lo AND $hi")
            params |= {"lo": min(named), "hi": max(named)}
        elif named:
            where.append("(image_key BETWEEN $lo AND $hi OR image_key IS NULL)")
            params |= {"lo": min(named), "hi": max(named)}
        # A sparse page (a filter few rows pass) spans a wide range: its images, checked right after
        # the scan, keep the joins to the rows of the page's images.
        images = [k["image_id"] for k in mine if k["image_id"] is not None]
        image_in = _in("image_id", images, "i", params)
        where.append(image_in if len(images) == len(mine) else f"({image_in} OR image_id IS NULL)")
        side = "dataset = $dataset AND " + _in(
            "conversation_id", [k["conversation_id"] for k in mine if k["conversation_id"]], "c", params)
        found += db.rows(f"{conversations_sql(' AND '.join(where), side)} {_whole(side, scores, exclude)}", params)
    order = {_key(k): i for i, k in enumerate(keys)}
    rows = sorted((r for r in found if _key(r) in order), key=lambda r: order[_key(r)])
    if carried:
        turns = {_key(k): k["turns"] for k in keys}
        rows = [{**r, "turns": turns[_key(r)]} for r in rows]
    return rows


def _whole(side: str, scores: bool, exclude: str = "") -> str:
    """The SELECT over `conversations` that reads the page's rows; with their quality scores (those
    of the conversations `side` names) when asked."""
    if not scores:
        return f"SELECT * {exclude} FROM conversations"
    return f"""SELECT c.* {exclude}, [{SCORED}] AS scores FROM conversations c
               LEFT JOIN (SELECT dataset, conversation_id, {SCORE_COLUMNS} FROM quality_scores WHERE {side}) q
                 ON q.dataset = c.dataset AND q.conversation_id = c.conversation_id"""


def _rows_by_rowid(db: Db, keys: list[dict], scores: bool, table: str) -> list[dict]:
    """_rows_of from BrowseTables.rows: each row looked up by its rowid (`rid`), one equality each.
    DuckDB applies an equality inside the scan, so only the vectors holding the page's rows are
    decoded, wherever they lie; an IN list, or a range over a sparse page, would decode the turns of
    most rows."""
    if not keys:
        return []
    params: dict = {f"r{i}": k["rid"] for i, k in enumerate(keys)}
    lookups = " UNION ALL ".join(f"SELECT * EXCLUDE (text), rowid AS rid FROM {table} WHERE rowid = $r{i}"
                                 for i in range(len(keys)))
    side = (_in("dataset", [k["dataset"] for k in keys], "d", params) + " AND "
            + _in("conversation_id", [k["conversation_id"] for k in keys if k["conversation_id"]], "c", params))
    found = db.rows(f"{conversations_sql(side=side, c=f'c AS ({lookups})')} {_whole(side, scores)}", params)
    order = {k["rid"]: i for i, k in enumerate(keys)}  # UNION ALL keeps no order: the page's is put back
    return [{k: v for k, v in r.items() if k != "rid"} for r in sorted(found, key=lambda r: order[r["rid"]])]


def _cache_key(used: dict[str, str]) -> tuple:
    return tuple(sorted(used.items()))


def browse_tables(db: Db) -> BrowseTables | None:
    """The browse tables of the current state, built now if they are not yet (one build per state,
    however many requests ask at once); None when the Db has none (the pages then read the views)."""
    tables = db.browse
    if tables is None:
        return None
    with tables.lock:
        if tables.built_s is None:
            t0 = time.perf_counter()
            _build_browse_tables(db, tables)
            tables.built_s = time.perf_counter() - t0
    return tables


def _build_browse_tables(db: Db, tables: BrowseTables) -> None:
    """Drop the tables of older generations no open Db reads, then copy `c` with its turn text and
    number its rows in ORDER. Two steps, so that only the narrow columns are sorted."""
    old = db.con.execute("SELECT table_name FROM duckdb_tables() "
                         "WHERE regexp_matches(table_name, '^browse_(rows|keys)_[0-9]+$')").fetchall()
    for (name,) in old:
        generation = int(name.rsplit("_", 1)[1])
        if generation < tables.generation and not tables.users.get(generation):  # no new users: not current
            db.con.execute(f"DROP TABLE IF EXISTS {name}")
    db.con.execute(f"CREATE OR REPLACE TABLE {tables.rows} AS "
                   + db.sql(f"WITH {_c()} SELECT *, {TURN_TEXT} AS text FROM c"))
    db.con.execute(f"""CREATE OR REPLACE TABLE {tables.keys} AS
        SELECT {', '.join(KEY)}, dataset_version, rowid AS rid, row_number() OVER ({ORDER}) AS pos
        FROM {tables.rows} ORDER BY pos""")


def _keys_by_position(db: Db, tables: BrowseTables, used: dict, params: dict) -> tuple[list[dict], int]:
    """A page of keys (and the count) from BrowseTables.keys, for filters on c's own short columns.
    Unfiltered, the positions are 1..n: the page is a seek to the rows after its offset."""
    own = " AND ".join(TABLE_FILTERS[k] for k in used) or "true"
    cols = ", ".join((*KEY, "rid"))
    if used:
        keys = db.rows(f"SELECT {cols} FROM {tables.keys} WHERE {own} ORDER BY pos LIMIT $limit OFFSET $offset",
                       params)
    else:
        keys = db.rows(f"SELECT {cols} FROM {tables.keys} WHERE pos > $offset ORDER BY pos LIMIT $limit", params)
    total = db.cached(("count", _cache_key(used)),
                      lambda: db.rows(f"SELECT count(*) AS n FROM {tables.keys} WHERE {own}", used)[0]["n"])
    return keys, total


def _keys_found(db: Db, used: dict, params: dict, table: str | None) -> tuple[list[dict], int]:
    """A page of keys (and the count) found by filtering `c` (from `table` when given, else the
    views), joined to the other assets when a status or reason filter needs them."""
    filters = TABLE_FILTERS if table else FILTERS
    own = " AND ".join(filters[k] for k in used if k not in JOINED) or "true"
    joined = " AND ".join(filters[k] for k in used if k in JOINED) or "true"
    if any(k in JOINED for k in used):
        source = f"{conversations_sql(own, table=table)} SELECT * FROM conversations WHERE {joined}"
    else:
        source = f"WITH {_c(own, table)} SELECT * FROM c"
    found = f"WITH found AS ({source})"
    page_of = f"FROM found {ORDER} LIMIT $limit OFFSET $offset"
    count = lambda: db.rows(f"{found} SELECT count(*) AS n FROM found", used)[0]["n"]  # noqa: E731
    cols = ", ".join((*KEY, "rid") if table else KEY)
    if "text" in used:  # the turns are searched once: the count comes with the page
        # From the views the page's turns come along (read again, a sparse page would decode every
        # row's turns); from the table _rows_of reads them by rowid.
        carry = "" if table else ", turns"
        keys = db.rows(f"{found} SELECT {cols}{carry}, count(*) OVER () AS total {page_of}", params)
        return keys, (keys[0]["total"] if keys else count())
    keys = db.rows(f"{found} SELECT {cols} {page_of}", params)
    return keys, db.cached(("count", _cache_key(used)), count)


def conversations(db: Db, filters: dict[str, str], page: int = 1, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of conversations (and rejected attempts) matching the filters, and how many match.

    The page is found on the sort columns alone (and, for a status or reason filter, the narrow
    join), then its rows are read whole. With the browse tables (BrowseTables), `c` is read from
    them: filters on c's own short columns page by position, a text filter scans the turn text
    lower-cased once. The count of a filter without text is kept per store state (Db.cached): it
    only changes when a partition pointer does."""
    used = {k: v for k, v in filters.items() if k in FILTERS and v}
    page = max(page, 1)
    params = {**used, "limit": page_size, "offset": (page - 1) * page_size}
    tables = browse_tables(db)
    if tables and not any(k in JOINED or k == "text" for k in used):
        keys, total = _keys_by_position(db, tables, used, params)
    else:
        keys, total = _keys_found(db, used, params, tables.rows if tables else None)
    rows = _rows_of(db, keys, table=tables.rows if tables else None)
    return {"rows": rows, "total": total, "page": page, "pages": max(1, -(-total // page_size))}


def filter_choices(db: Db, dataset: str | None = None) -> dict[str, list]:
    """The values each browse filter can take (distinct values of a few short columns), kept per
    store state (Db.cached)."""
    where, params = ("WHERE dataset = $dataset", {"dataset": dataset}) if dataset else ("", {})
    found = db.cached(("choices", dataset), lambda: db.one(f"""{CONVERSATIONS}
        SELECT list(DISTINCT dataset ORDER BY dataset) AS dataset, list(DISTINCT dataset_version ORDER BY dataset_version)
                 AS version, list(DISTINCT recipe ORDER BY recipe) AS recipe,
               list(DISTINCT prompt_id ORDER BY prompt_id) AS prompt, list(DISTINCT reason ORDER BY reason) AS reason
        FROM conversations {where}""", params) or {})
    return {**{k: [x for x in (v or []) if x is not None] for k, v in found.items()}, "status": list(STATUSES)}


def image_conversations(db: Db, dataset: str, image_id: str) -> list[dict]:
    """Every conversation and rejected attempt of one image, with its scores (each naming its model)."""
    params = {"dataset": dataset, "image_id": image_id}
    where = "dataset = $dataset AND image_id = $image_id"
    ids = [r["conversation_id"] for r in db.rows(f"WITH {_c(where)} SELECT conversation_id FROM c", params)]
    side = "dataset = $dataset AND " + _in("conversation_id", [i for i in ids if i], "c", params)
    return db.rows(f"""{conversations_sql(where, side)}
        SELECT c.*, [{SCORED}] AS scores FROM conversations c
        LEFT JOIN (SELECT dataset, conversation_id, {SCORE_COLUMNS} FROM quality_scores WHERE {side}) q
          ON q.dataset = c.dataset AND q.conversation_id = c.conversation_id
        {ORDER}""", params)


def conversation(db: Db, dataset: str, conversation_id: str) -> dict | None:
    where = "dataset = $dataset AND conversation_id = $conversation_id"
    return db.one(f"{conversations_sql(where, where)} SELECT * FROM conversations",
                  {"dataset": dataset, "conversation_id": conversation_id})


def llava_preview(row: dict) -> str:
    """The conversation as the exporter writes it into llava.json (a list of one item)."""
    return _data_bytes(to_llava([row])).decode("utf-8")


# --- one image -------------------------------------------------------------------------------------

def image(db: Db, dataset: str, image_id: str) -> dict | None:
    """The grouped metadata of an image, its description for the LLM and its cluster; for an image
    that did not make it into grouped_metadata, what the source records say (key only)."""
    found = db.one("""
        SELECT g.*, true AS grouped, d.description, k.cluster, k.model AS cluster_model
        FROM grouped_metadata g
        LEFT JOIN image_descriptions d ON d.dataset = g.dataset AND d.image_id = g.image_id
        LEFT JOIN image_clusters k ON k.dataset = g.dataset AND k.image_id = g.image_id
        WHERE g.dataset = ? AND g.image_id = ?""", [dataset, image_id])
    return found or db.one("""
        SELECT dataset, any_value(dataset_version) AS dataset_version, image_id, any_value(image_key) AS image_key,
               false AS grouped, NULL AS width, NULL AS height, NULL AS boxes, NULL AS description,
               NULL AS cluster, NULL AS cluster_model
        FROM source_records WHERE dataset = ? AND image_id = ? AND image_key IS NOT NULL GROUP BY ALL""",
                           [dataset, image_id])


def image_key(db: Db, dataset: str, image_id: str) -> str | None:
    """The key (path under the image folder) the store registered for an image id, or None."""
    found = db.one("""
        SELECT image_key FROM grouped_metadata WHERE dataset = ? AND image_id = ?
        UNION ALL SELECT image_key FROM source_records WHERE dataset = ? AND image_id = ? AND image_key IS NOT NULL
        LIMIT 1""", [dataset, image_id] * 2)
    return found["image_key"] if found else None


def _null_typed(db: Db, view: str) -> set[str]:
    """Columns of `view` whose Parquet files store them as the Null type (written all-null by
    Polars when no row had a value). DuckDB 1.5 cannot skip over such a column's PLAIN pages: a
    filtered read of it fails with "PlainSkip not implemented", so queries read NULL instead.
    The store no longer writes that type (storage.storable), but a file already written keeps it:
    its data version did not change, so it is never rewritten. This is for those stores."""
    if view not in db.views:
        return set()
    return {r["column_name"] for r in db.rows(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND data_type = '\"NULL\"'", [view])}


def image_facts(db: Db, dataset: str, image_id: str) -> list[dict]:
    null = _null_typed(db, "image_facts")
    cols = ", ".join(f"NULL::VARCHAR AS {c}" if c in null else c for c in ("derived_from", "note", "model"))
    return db.rows(f"""
        SELECT kind, text, {cols} FROM image_facts WHERE dataset = ? AND image_id = ?
        ORDER BY list_position(['caption', 'object', 'qa', 'ocr'], kind), fact_id""", [dataset, image_id])


def image_rejects(db: Db, dataset: str, image_id: str) -> list[dict]:
    """Source records of the image that did not make it into its grouped metadata, and why."""
    return db.rows("SELECT record_id, reason, detail FROM metadata_rejects WHERE dataset = ? AND image_id = ? "
                   "ORDER BY record_id", [dataset, image_id])


def images(db: Db, dataset: str, page: int = 1, page_size: int = 100) -> list[dict]:
    """Image keys and ids of a dataset, a page at a time (the overview's index)."""
    return db.rows("SELECT image_id, image_key FROM grouped_metadata WHERE dataset = ? ORDER BY image_key "
                   "LIMIT ? OFFSET ?", [dataset, page_size, (max(page, 1) - 1) * page_size])

"""What each page shows, as SQL over the catalog's views (sql/*.sql). Pure: DuckDB only, no Dagster.

Every query runs in DuckDB and returns only the rows a page shows (LIMIT/OFFSET), never a table.
An asset that has no data yet has no view in the catalog: each query then reads an empty stand-in
with the columns it uses (a CTE of the same name, which shadows the view), so a page of a
half-built store shows what there is instead of failing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Db:
    """A cursor on the catalog and the names of the views it holds."""

    con: duckdb.DuckDBPyConnection
    views: frozenset[str]

    def sql(self, body: str) -> str:
        """`body` with an empty stand-in for every view it reads that the catalog does not have."""
        missing = [v for v in STUBS if v not in self.views and re.search(rf"\b{v}\b", body)]
        if not missing:
            return body
        ctes = ", ".join(f"{v} AS (SELECT {STUBS[v]} WHERE false)" for v in missing)
        if body.lstrip().upper().startswith("WITH "):
            return f"WITH {ctes}, {body.lstrip()[5:]}"
        return f"WITH {ctes} {body}"

    def rows(self, body: str, params: list | None = None) -> list[dict[str, Any]]:
        cur = self.con.execute(self.sql(body), params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def one(self, body: str, params: list | None = None) -> dict[str, Any] | None:
        found = self.rows(body, params)
        return found[0] if found else None

    def close(self) -> None:
        self.con.close()


# --- the dataset page ----------------------------------------------------------------------------

def datasets(db: Db) -> list[str]:
    """Datasets that were ingested (the pointers say so: no data file is read)."""
    return [r["dataset"] for r in db.rows(
        "SELECT DISTINCT dataset FROM current_partitions WHERE asset = 'source_records' ORDER BY 1")]


def dataset_versions(db: Db, dataset: str) -> list[dict]:
    return db.rows("SELECT * FROM dataset_versions WHERE dataset = ? ORDER BY ingested_at DESC", [dataset])


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
CONVERSATIONS = """
    WITH c AS (
      SELECT dataset, dataset_version, conversation_id, image_id, image_key, recipe, prompt_id, prompt_version,
             iteration, llm_model, llm_weights, turns, 'generation' AS origin, NULL AS attempt_reason, NULL AS detail
      FROM generated_conversations
      UNION ALL
      SELECT dataset, dataset_version, conversation_id, image_id, image_key, recipe, source, NULL, NULL, NULL, NULL,
             turns, 'imported', NULL, NULL
      FROM imported_conversations
      UNION ALL
      SELECT dataset, dataset_version, NULL, image_id, image_key, recipe, prompt_id, prompt_version, iteration,
             llm_model, llm_weights, NULL, 'attempt', reason, detail
      FROM conversation_attempts WHERE status = 'rejected'),
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
      LEFT JOIN conversation_rejects r ON r.dataset = c.dataset AND r.conversation_id = c.conversation_id
      LEFT JOIN filtered_conversations f ON f.dataset = c.dataset AND f.conversation_id = c.conversation_id
      LEFT JOIN selection_ranking s ON s.dataset = c.dataset AND s.conversation_id = c.conversation_id
      LEFT JOIN visit_export e ON e.dataset = c.dataset AND e.conversation_id = c.conversation_id)"""
ORDER = "ORDER BY dataset, image_key, recipe, iteration NULLS LAST, conversation_id NULLS FIRST, prompt_id, origin"
TURN_TEXT = "lower(array_to_string(list_transform(turns, t -> t.\"value\"), chr(10)))"

# Browse filters: the query-string name and its condition.
FILTERS = {"dataset": "dataset = ?", "version": "dataset_version = ?", "recipe": "recipe = ?",
           "prompt": "prompt_id = ?", "status": "status = ?", "reason": "reason = ?",
           "text": f"contains({TURN_TEXT}, lower(?))"}


def _where(filters: dict[str, str]) -> tuple[str, list]:
    used = {k: v for k, v in filters.items() if k in FILTERS and v}
    return ("WHERE " + " AND ".join(FILTERS[k] for k in used)) if used else "", list(used.values())


def conversations(db: Db, filters: dict[str, str], page: int = 1, page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of conversations (and rejected attempts) matching the filters, and how many match."""
    where, params = _where(filters)
    total = db.one(f"{CONVERSATIONS} SELECT count(*) AS n FROM conversations {where}", params)["n"]
    rows = db.rows(f"{CONVERSATIONS} SELECT * FROM conversations {where} {ORDER} LIMIT ? OFFSET ?",
                   params + [page_size, (max(page, 1) - 1) * page_size])
    return {"rows": rows, "total": total, "page": max(page, 1), "pages": max(1, -(-total // page_size))}


def filter_choices(db: Db, dataset: str | None = None) -> dict[str, list]:
    """The values each browse filter can take (distinct values of a few short columns)."""
    where, params = ("WHERE dataset = ?", [dataset]) if dataset else ("", [])
    found = db.one(f"""{CONVERSATIONS}
        SELECT list(DISTINCT dataset ORDER BY dataset) AS dataset, list(DISTINCT dataset_version ORDER BY dataset_version)
                 AS version, list(DISTINCT recipe ORDER BY recipe) AS recipe,
               list(DISTINCT prompt_id ORDER BY prompt_id) AS prompt, list(DISTINCT reason ORDER BY reason) AS reason
        FROM conversations {where}""", params) or {}
    return {**{k: [x for x in (v or []) if x is not None] for k, v in found.items()}, "status": list(STATUSES)}


def image_conversations(db: Db, dataset: str, image_id: str) -> list[dict]:
    """Every conversation and rejected attempt of one image, with its scores (each naming its model)."""
    scores = ", ".join(f"{{'name': '{s}', 'raw': q.{s}_raw, 'scaled': q.{s}_scaled, 'model': q.{s}_model}}"
                       for s in SCORES)
    return db.rows(f"""{CONVERSATIONS},
        scored AS (SELECT c.*, [{scores}] AS scores FROM conversations c
                   LEFT JOIN quality_scores q ON q.dataset = c.dataset AND q.conversation_id = c.conversation_id)
        SELECT * FROM scored WHERE dataset = ? AND image_id = ? {ORDER}""", [dataset, image_id])


def conversation(db: Db, dataset: str, conversation_id: str) -> dict | None:
    return db.one(f"{CONVERSATIONS} SELECT * FROM conversations WHERE dataset = ? AND conversation_id = ?",
                  [dataset, conversation_id])


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


def image_facts(db: Db, dataset: str, image_id: str) -> list[dict]:
    return db.rows("""
        SELECT kind, text, derived_from, note, model FROM image_facts WHERE dataset = ? AND image_id = ?
        ORDER BY list_position(['caption', 'object', 'qa', 'ocr'], kind), fact_id""", [dataset, image_id])


def image_rejects(db: Db, dataset: str, image_id: str) -> list[dict]:
    """Source records of the image that did not make it into its grouped metadata, and why."""
    return db.rows("SELECT record_id, reason, detail FROM metadata_rejects WHERE dataset = ? AND image_id = ? "
                   "ORDER BY record_id", [dataset, image_id])


def images(db: Db, dataset: str, page: int = 1, page_size: int = 100) -> list[dict]:
    """Image keys and ids of a dataset, a page at a time (the overview's index)."""
    return db.rows("SELECT image_id, image_key FROM grouped_metadata WHERE dataset = ? ORDER BY image_key "
                   "LIMIT ? OFFSET ?", [dataset, page_size, (max(page, 1) - 1) * page_size])

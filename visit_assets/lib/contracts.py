"""The columns (and types) each main asset's readers rely on: the next steps, the catalog and the
export. Each asset's step checks the frame it wrote against its entry (lib.columns.schema_problems).
Only what is read is listed: the other columns may come and go with the rows (frames.rows_frame)."""

from __future__ import annotations

import polars as pl

from .columns import Expected
from .metadata.records import SOURCE_RECORD_SCHEMA

_S = pl.String
# a conversation as every stage after generation reads it (filters, scores, selection, export)
CONVERSATION: dict[str, Expected] = {"conversation_id": _S, "image_id": _S, "image_key": _S, "recipe": _S,
                                     "turns": pl.List}

REQUIRED_COLUMNS: dict[str, dict[str, Expected]] = {
    # every loader's record schema, plus what ingest adds to route each record to its image's shard
    "source_records": {**SOURCE_RECORD_SCHEMA, "image_id": _S, "shard": pl.Int32},
    "grouped_metadata": {"image_id": _S, "image_key": _S, "shard": pl.Int32, "width": pl.Int64, "height": pl.Int64,
                         "captions": pl.List, "boxes": pl.List, "qa": pl.List, "ocr": pl.List, "sources": pl.List,
                         "source_record_ids": pl.List, "n_source_records": None},
    "image_facts": {"fact_id": _S, "image_id": _S, "image_key": _S, "kind": _S, "text": _S},
    "generated_conversations": CONVERSATION,
    "filtered_conversations": CONVERSATION,
    "selected_subset": {**CONVERSATION, "cluster": pl.Int64, "F": pl.Float64, "rank": pl.Int64},
    "generated_instructions": {"image_id": _S, "instruction_id": _S, "instruction": _S, "status": _S},
    "clustered_instructions": {"instruction_id": _S, "instruction": _S, "status": _S, "embedding": pl.Array,
                               "embedder": _S},
    "instruction_matches": {"image_id": _S, "instruction_id": _S, "instruction": _S},
}

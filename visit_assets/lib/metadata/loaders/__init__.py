"""Metadata loaders: each turns one file into source records (see ..records)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..records import INVALID, to_source_records
from .coco import load_coco, looks_like_coco
from .llava import load_llava, looks_like_llava
from .records_format import load_records

LOADERS = {"coco": load_coco, "llava": load_llava, "records": load_records}
METADATA_SUFFIXES = (".json", ".jsonl", ".parquet")


def detect_format(path: Path) -> str | None:
    """Pick a loader from the suffix and the first bytes; None when nothing matches."""
    if path.suffix in (".jsonl", ".parquet"):
        return "records"
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if looks_like_llava(head):
        return "llava"
    if looks_like_coco(head):
        return "coco"
    return None


def load_source(path: Path, source: str, fmt: str | None = None) -> pl.DataFrame:
    """Load one metadata file; an unknown format is a reject row, not an exception."""
    fmt = fmt or detect_format(path)
    if fmt is None:
        if not path.read_bytes()[:1]:
            reason, detail = "malformed_file", "the file is empty"
        else:
            reason, detail = "unknown_format", "not COCO, LLaVA or the record format"
        return to_source_records([{"source": source, "source_format": "unknown", "kind": INVALID,
                                   "record_id": f"{source}#file", "reject_reason": reason,
                                   "reject_detail": detail}])
    if fmt not in LOADERS:
        raise ValueError(f"unknown metadata format {fmt!r}; known: {sorted(LOADERS)}")
    return LOADERS[fmt](path, source)

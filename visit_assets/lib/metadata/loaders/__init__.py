"""Metadata loaders: each turns one file into source records (see ..records). Which formats
exist, built in or from plugins, and how a file's format is recognised: registry.py."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ..records import INVALID, to_source_records
from . import registry

METADATA_SUFFIXES = (".json", ".jsonl", ".parquet")  # the built-in loaders' (and imported conversations')


def detect_format(path: Path) -> str | None:
    """The loader that recognises the file, None when none or several do (registry.detect)."""
    return registry.detect(path).format


def load_source(path: Path, source: str, fmt: str | None = None) -> pl.DataFrame:
    """Load one metadata file; an unknown or ambiguous format is a reject row, not an exception."""
    if fmt is None:
        if not path.read_bytes()[:1]:
            return _file_reject(source, "malformed_file", "the file is empty")
        found = registry.detect(path)
        if found.format is None:
            return _file_reject(source, found.reason or "unknown_format", found.detail)  # (always set without a format)
        fmt = found.format
    return registry.get(fmt).load(path, source)


def _file_reject(source: str, reason: str, detail: str) -> pl.DataFrame:
    return to_source_records([{"source": source, "source_format": "unknown", "kind": INVALID,
                               "record_id": f"{source}#file", "reject_reason": reason, "reject_detail": detail}])

"""Assembling the quality-score table: imported scores first, computed ones where absent, then
each score scaled to 0-100 over the dataset version (InstructionGPT-4 section 3.2)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from .scores import scale_0_100
from .text import instruction_and_answer


def with_texts(conversations: pl.DataFrame) -> pl.DataFrame:
    """Adds `instruction` and `answer` (see `instruction_and_answer`)."""
    pairs = [instruction_and_answer(t) for t in conversations["turns"].to_list()] if conversations.height else []
    return conversations.with_columns(
        pl.Series("instruction", [p[0] for p in pairs], dtype=pl.String),
        pl.Series("answer", [p[1] for p in pairs], dtype=pl.String))


def merge_score(frame: pl.DataFrame, name: str, computed: np.ndarray | None, model: str | None
                ) -> tuple[np.ndarray, list[str | None]]:
    """A row's imported score wins over the computed one; each value keeps the model that made it."""
    n = frame.height
    imported = frame[f"imported_{name}"].to_numpy().astype(np.float64) if f"imported_{name}" in frame.columns \
        else np.full(n, np.nan)
    imported_models = frame[f"imported_{name}_model"].to_list() if f"imported_{name}_model" in frame.columns \
        else [None] * n
    values = np.where(np.isfinite(imported), imported, computed if computed is not None else np.nan)
    models = [m if np.isfinite(i) else (model if np.isfinite(v) else None)
              for i, m, v in zip(imported, imported_models, values, strict=True)]
    return values, models


def scaled_columns(raw: dict[str, np.ndarray]) -> tuple[list[pl.Series], dict[str, Any]]:
    """`<name>_raw` and `<name>_scaled` columns and the scaling record of each score."""
    columns, records = [], {}
    for name, values in raw.items():
        scaled, records[name] = scale_0_100(values)
        columns += [pl.Series(f"{name}_raw", values, dtype=pl.Float64).fill_nan(None),
                    pl.Series(f"{name}_scaled", scaled, dtype=pl.Float64).fill_nan(None)]
    return columns, records

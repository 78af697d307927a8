"""Assembling the quality-score table: imported scores first, computed ones where absent, then
each score scaled to 0-100 over the dataset version (InstructionGPT-4 section 3.2)."""

from __future__ import annotations

import json
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
              for i, m, v in zip(imported, imported_models, values)]
    return values, models


def scaled_columns(raw: dict[str, np.ndarray]) -> tuple[list[pl.Series], dict[str, Any]]:
    """`<name>_raw` and `<name>_scaled` columns and the scaling record of each score."""
    columns, records = [], {}
    for name, values in raw.items():
        scaled, records[name] = scale_0_100(values)
        columns += [pl.Series(f"{name}_raw", values, dtype=pl.Float64).fill_nan(None),
                    pl.Series(f"{name}_scaled", scaled, dtype=pl.Float64).fill_nan(None)]
    return columns, records


def ranking(frame: pl.DataFrame, rows: pl.DataFrame, weights_used: dict[str, float],
            method: dict[str, Any] | None = None) -> pl.DataFrame:
    """Every scored conversation with F, cluster, rank and the outcome of the selection; `method`
    (scaling, quota rule, selection method) is recorded on every row."""
    ranked = frame.select("conversation_id", "image_id", "image_key", "recipe", "dataset", "dataset_version").join(
        rows.rename({"id": "conversation_id"}).cast({"conversation_id": pl.String, "cluster": pl.Int64,
                                                      "F": pl.Float64, "rank": pl.Int64, "in_quota": pl.Boolean,
                                                      "selected": pl.Boolean}),
        on="conversation_id", how="left")
    outcome = (pl.when(pl.col("selected")).then(pl.lit("selected"))
               .when(pl.col("conversation_id").is_in(rows["id"].cast(pl.String).implode()).not_())
               .then(pl.lit("not_in_pool"))
               .when(pl.col("cluster").is_null()).then(pl.lit("no_image_cluster"))
               .when(pl.col("in_quota")).then(pl.lit("below_global_cut"))
               .when(pl.lit((method or {}).get("method") == "random")).then(pl.lit("not_drawn"))
               .when(pl.col("F").is_null()).then(pl.lit("no_score"))
               .otherwise(pl.lit("below_cluster_quota")))
    return ranked.with_columns(outcome.alias("outcome"),
                               pl.lit(json.dumps(weights_used, sort_keys=True)).alias("weights_used"),
                               pl.lit(json.dumps(method or {}, sort_keys=True)).alias("selection_method"))


def distribution(values: Any) -> dict[str, float | int | None]:
    """Summary of the finite values (metadata)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return {"n": 0}
    q = np.percentile(v, [0, 25, 50, 75, 100])
    return {"n": int(v.size), "mean": round(float(v.mean()), 2), "min": round(float(q[0]), 2),
            "p25": round(float(q[1]), 2), "median": round(float(q[2]), 2), "p75": round(float(q[3]), 2),
            "max": round(float(q[4]), 2)}

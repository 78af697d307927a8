"""The selection's outcome for every scored conversation, and what the selection pool is."""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

import numpy as np
import polars as pl

from .imported import RECIPE as IMPORTED

Pool = Literal["all", "generated"]  # SelectionConfig.pool
POOLS: tuple[str, ...] = get_args(Pool)


def pool_rows(frame: pl.DataFrame, pool: str) -> pl.DataFrame:
    """The rows selection chooses from: all, or only generated ones (imported conversations left out,
    to serve as a baseline). A row without a recipe is not an imported one."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    return frame if pool == "all" else frame.filter(pl.col("recipe").ne_missing(IMPORTED))


def ranking(frame: pl.DataFrame, rows: pl.DataFrame, weights_used: dict[str, float],
            method: dict[str, Any] | None = None) -> pl.DataFrame:
    """Every scored conversation (`frame`, with its image `cluster`) with F, rank and the outcome of
    the selection (`rows`, from select.select); `method` (scaling, quota rule, selection method) is
    recorded on every row."""
    how = (method or {}).get("method", "per-cluster")
    ranked = frame.select("conversation_id", "image_id", "image_key", "recipe", "cluster", "dataset",
                          "dataset_version").join(
        rows.drop("cluster").rename({"id": "conversation_id"}).cast(
            {"conversation_id": pl.String, "F": pl.Float64, "rank": pl.Int64, "in_quota": pl.Boolean,
             "selected": pl.Boolean}),
        on="conversation_id", how="left")
    below = {"per-cluster": "below_cluster_quota", "global": "below_top_alpha", "random": "not_drawn"}[how]
    outcome = (pl.when(pl.col("selected")).then(pl.lit("selected"))
               .when(pl.col("conversation_id").is_in(rows["id"].cast(pl.String).implode()).not_())
               .then(pl.lit("not_in_pool"))
               .when(pl.col("cluster").is_null()).then(pl.lit("no_image_cluster"))
               .when(pl.col("in_quota")).then(pl.lit("below_global_cut"))
               .when(pl.col("F").is_null() & pl.lit(how != "random")).then(pl.lit("no_score"))
               .otherwise(pl.lit(below)))
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

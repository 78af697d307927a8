"""Per-cluster top-F selection (InstructionGPT-4 Algorithm 1).

quota_i = max(1, round(alpha * |D_i| / |D|)), capped at |D_i| (the max(1, ...) floor is from the
paper's public code, shared/docs/reference.md). `round` is Python's: halves go to the even
integer, as in that code; the quota is computed on exact fractions, so 2.5 is exactly 2.5.
alpha is a count (int >= 1, 200 in the paper) or a fraction (float in (0, 1]: alpha = fraction x |D|).
Because of the rounding and the floor the total selected can differ from alpha by a few rows;
the table shows both.

Within a cluster rows are ranked by F descending, then id ascending (ids are content hashes,
stable across runs), and rows whose F is NaN/null rank after every scored row. Rows without a
cluster (label null or negative: an image that could not be embedded) are not part of D: they are
never selected and are counted in `n_unclustered`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

import numpy as np
import polars as pl


@dataclass(frozen=True)
class Selection:
    ids: list[Any]  # selected ids, by cluster then rank
    table: pl.DataFrame  # one row per cluster: cluster, size, quota_exact, quota, selected, n_missing_score
    rows: pl.DataFrame  # every input row: id, cluster, F, rank (within its cluster, 0 = best), selected
    alpha: float  # alpha as a count (fraction x |D| when given as a fraction)
    n_total: int  # |D|: rows with a cluster
    n_unclustered: int
    info: dict[str, Any] = field(default_factory=dict)


def _alpha_fraction(alpha: Any) -> Fraction:
    if isinstance(alpha, bool) or not isinstance(alpha, Real):
        raise TypeError(f"alpha must be an int (a count) or a float in (0, 1] (a fraction), got {alpha!r}")
    if isinstance(alpha, Integral):
        if alpha < 1:
            raise ValueError(f"alpha as a count must be >= 1, got {alpha}")
        return Fraction(int(alpha))
    a = float(alpha)
    if not 0 < a <= 1:
        raise ValueError(f"alpha as a float is a fraction of the dataset and must be in (0, 1], got {alpha}; "
                         "pass an int for a count")
    return Fraction(repr(a))  # the decimal the caller wrote, not its binary approximation


def quotas(sizes: dict[Any, int], alpha: Any) -> dict[Any, tuple[Fraction, int]]:
    """{cluster: (exact share alpha*|D_i|/|D|, quota)} with quota = min(|D_i|, max(1, round(share)))."""
    total = sum(sizes.values())
    frac = _alpha_fraction(alpha)
    count = frac * total if not isinstance(alpha, Integral) else frac
    out = {}
    for c, size in sizes.items():
        exact = count * size / total
        out[c] = (exact, min(int(size), max(1, round(exact))))
    return out


def _cluster_labels(clusters: Any) -> np.ndarray:
    """Integer labels, -1 for a missing one (None, NaN or negative)."""
    arr = np.asarray(clusters)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype == object:
        arr = np.array([np.nan if x is None else x for x in arr], dtype=np.float64)
    arr = arr.astype(np.float64)
    missing = ~np.isfinite(arr)
    if (arr[~missing] != np.round(arr[~missing])).any():
        raise ValueError("cluster labels must be integers")
    return np.where(missing, -1, arr).astype(np.int64)


def select(ids: Any, F: Any = None, clusters: Any = None, alpha: Any = 200, *,
           id_col: str = "id", score_col: str = "F", cluster_col: str = "cluster") -> Selection:
    """Select the top-F rows of every cluster; `ids` is a polars DataFrame (columns id_col,
    score_col, cluster_col) or a sequence of ids with `F` and `clusters` given alongside."""
    if isinstance(ids, pl.DataFrame):
        if F is not None or clusters is not None:
            raise ValueError("give a DataFrame or arrays, not both")
        cluster = pl.col(cluster_col)
        if ids.schema[cluster_col].is_float():
            cluster = cluster.fill_nan(None)
        frame = ids.select(pl.col(id_col).alias("id"), pl.col(score_col).cast(pl.Float64).alias("F"),
                           cluster.cast(pl.Int64).alias("cluster"))
    else:
        if F is None or clusters is None:
            raise ValueError("select(ids, F, clusters, alpha): F and clusters are required with an id sequence")
        id_values = list(ids) if not isinstance(ids, np.ndarray) else ids.tolist()
        f = np.asarray(F, dtype=np.float64)
        c = _cluster_labels(clusters)
        if not (len(id_values) == f.size == c.size):
            raise ValueError(f"ids, F and clusters differ in length: {len(id_values)}, {f.size}, {c.size}")
        frame = pl.DataFrame({"id": id_values, "F": f, "cluster": c}, strict=False)
    if frame["id"].null_count():
        raise ValueError("ids must not be null")
    if frame["id"].n_unique() != frame.height:
        raise ValueError("ids must be unique")

    frame = frame.with_columns(
        pl.col("F").fill_nan(None),  # polars sorts NaN above every number; null sorts last on request
        pl.when(pl.col("cluster") >= 0).then(pl.col("cluster")).otherwise(None).alias("cluster"),
    )
    clustered = frame.filter(pl.col("cluster").is_not_null())
    n_total = clustered.height
    sizes = dict(clustered.group_by("cluster").len().sort("cluster").iter_rows())
    alpha_frac = _alpha_fraction(alpha)
    q = quotas(sizes, alpha) if n_total else {}

    ranked = (
        frame.with_row_index("_row")
        .sort(["cluster", "F", "id"], descending=[False, True, False], nulls_last=True)
        .with_columns(pl.int_range(pl.len()).over("cluster").alias("rank"))
        .with_columns(pl.when(pl.col("cluster").is_null()).then(None).otherwise(pl.col("rank")).alias("rank"))
    )
    quota_frame = pl.DataFrame(
        {"cluster": list(q), "quota_exact": [float(v[0]) for v in q.values()], "quota": [v[1] for v in q.values()]},
        schema={"cluster": pl.Int64, "quota_exact": pl.Float64, "quota": pl.Int64},
    )
    ranked = ranked.join(quota_frame.select("cluster", "quota"), on="cluster", how="left").with_columns(
        (pl.col("rank") < pl.col("quota")).fill_null(False).alias("selected"))
    chosen = ranked.filter(pl.col("selected")).sort(["cluster", "rank"])
    table = (
        ranked.filter(pl.col("cluster").is_not_null())
        .group_by("cluster")
        .agg(pl.len().alias("size"), pl.col("selected").sum().alias("selected"),
             pl.col("F").null_count().alias("n_missing_score"))
        .join(quota_frame, on="cluster")
        .select("cluster", pl.col("size").cast(pl.Int64), "quota_exact", "quota",
                pl.col("selected").cast(pl.Int64), pl.col("n_missing_score").cast(pl.Int64))
        .sort("cluster")
    )
    rows = ranked.sort("_row").select("id", "cluster", "F", pl.col("rank").cast(pl.Int64), "selected")
    alpha_count = float(alpha_frac * n_total) if not isinstance(alpha, Integral) else float(alpha_frac)
    return Selection(
        ids=chosen["id"].to_list(),
        table=table,
        rows=rows,
        alpha=alpha_count,
        n_total=n_total,
        n_unclustered=frame.height - n_total,
        info={
            "rule": "quota = min(|D_i|, max(1, round(alpha*|D_i|/|D|))), round half to even; "
                    "rank by F desc (NaN last), then id asc",
            "alpha_given": int(alpha) if isinstance(alpha, Integral) else float(alpha),
            "alpha_kind": "count" if isinstance(alpha, Integral) else "fraction",
            "alpha_count": alpha_count,
            "n_selected": chosen.height,
            "n_clusters": len(sizes),
        },
    )

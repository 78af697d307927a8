"""Per-cluster top-F selection (InstructionGPT-4 Algorithm 1) and the paper's ablations.

Two quota rules (shared/docs/reference.md):

* "paper" (default): |S_i| = alpha * |D_i| / |D| (Algorithm 1), rounded to the nearest integer
  (the paper gives no rounding; Python's `round`, halves to even, on exact fractions, so 2.5 is
  exactly 2.5), capped at |D_i|. A small cluster can get 0. The total can differ from alpha by a
  few rows; the table shows both.
* "reference": the public selection code: int(204 * |D_i| / |D|) for alpha 200 (truncated, here
  alpha x REFERENCE_OVERSAMPLE), at least one per cluster, capped at |D_i|; then the global top
  round(alpha) of those by F (at least one): exactly that many rows when there are that many.

alpha is a count (int >= 1, 200 in the paper) or a fraction (float in (0, 1]: alpha = fraction x |D|).
Methods (`METHODS`): "per-cluster" is Algorithm 1; "global" ranks every clustered row as one cluster
(Table 5, "D.S. w/o clus."); "random" selects alpha of them uniformly, keyed by a hash of (seed, id)
so adding rows does not reshuffle the others (Tables 4 and 5, "Random"). Every method draws from
the same pool D: rows with a cluster.

Within a cluster rows are ranked by F descending, then id ascending (ids are content hashes,
stable across runs), and rows whose F is NaN/null rank after every scored row. Rows without a
cluster (label null or negative: an image that could not be embedded) are not part of D: they are
never selected and are counted in `n_unclustered`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from fractions import Fraction
from numbers import Integral, Real
from typing import Any, Literal, get_args

import numpy as np
import polars as pl

# The choices of SelectionConfig (quota_rule, method): its run config offers these and refuses others.
QuotaRule = Literal["paper", "reference"]
RULES: tuple[str, ...] = get_args(QuotaRule)
SelectMethod = Literal["per-cluster", "global", "random"]
METHODS: tuple[str, ...] = get_args(SelectMethod)
REFERENCE_OVERSAMPLE = Fraction(204, 200)  # the public code's int(204 * |D_i| / |D|) for alpha 200


@dataclass(frozen=True)
class Selection:
    ids: list[Any]  # selected ids, by cluster then rank
    table: pl.DataFrame  # one row per cluster: cluster, size, quota_exact, quota, selected, n_missing_score
    rows: pl.DataFrame  # every input row: id, cluster, F, rank (in its cluster, 0 = best), in_quota, selected
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


def quotas(sizes: dict[Any, int], alpha: Any, rule: str = "paper") -> dict[Any, tuple[Fraction, int]]:
    """{cluster: (exact share alpha*|D_i|/|D|, quota)} under `rule` (module docstring)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    total = sum(sizes.values())
    frac = _alpha_fraction(alpha)
    count = frac * total if not isinstance(alpha, Integral) else frac
    out = {}
    for c, size in sizes.items():
        exact = count * size / total
        quota = round(exact) if rule == "paper" else max(1, math.floor(exact * REFERENCE_OVERSAMPLE))
        out[c] = (exact, min(int(size), quota))
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


def select(ids: Any, F: Any = None, clusters: Any = None, alpha: Any = 200, *, rule: str = "paper",
           method: str = "per-cluster", seed: int = 0,
           id_col: str = "id", score_col: str = "F", cluster_col: str = "cluster") -> Selection:
    """Select the top-F rows of every cluster; `ids` is a polars DataFrame (columns id_col,
    score_col, cluster_col) or a sequence of ids with `F` and `clusters` given alongside.
    `rule` and `method`: module docstring."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    frame = _input_frame(ids, F, clusters, id_col, score_col, cluster_col)
    frame = frame.with_columns(
        pl.col("F").fill_nan(None),  # polars sorts NaN above every number; null sorts last on request
        pl.when(pl.col("cluster") >= 0).then(pl.col("cluster")).otherwise(None).alias("cluster"),
    )
    if method != "per-cluster":  # the ablations: one cluster of every clustered row, ranked by F or a seeded draw
        frame = frame.with_columns(pl.when(pl.col("cluster").is_not_null()).then(pl.lit(0, dtype=pl.Int64))
                                   .alias("cluster"))
    key = _random_keys(frame["id"], seed) if method == "random" else frame["F"]
    frame = frame.with_columns(key.alias("_key"))
    clustered = frame.filter(pl.col("cluster").is_not_null())
    n_total = clustered.height
    sizes = dict(clustered.group_by("cluster").len().sort("cluster").iter_rows())
    alpha_frac = _alpha_fraction(alpha)
    alpha_count = float(alpha_frac * n_total) if not isinstance(alpha, Integral) else float(alpha_frac)
    q = quotas(sizes, alpha, rule) if n_total else {}

    ranked = (
        frame.with_row_index("_row")
        .sort(["cluster", "_key", "id"], descending=[False, True, False], nulls_last=True)
        .with_columns(pl.int_range(pl.len()).over("cluster").alias("rank"))
        .with_columns(pl.when(pl.col("cluster").is_null()).then(None).otherwise(pl.col("rank")).alias("rank"))
    )
    quota_frame = pl.DataFrame(
        {"cluster": list(q), "quota_exact": [float(v[0]) for v in q.values()], "quota": [v[1] for v in q.values()]},
        schema={"cluster": pl.Int64, "quota_exact": pl.Float64, "quota": pl.Int64},
    )
    ranked = ranked.join(quota_frame.select("cluster", "quota"), on="cluster", how="left").with_columns(
        (pl.col("rank") < pl.col("quota")).fill_null(False).alias("in_quota"))
    cut = max(1, round(alpha_count)) if n_total else 0  # the reference rule keeps this many (at least one)
    ranked = _global_cut(ranked, cut) if rule == "reference" else ranked.with_columns(pl.col("in_quota").alias("selected"))
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
    rows = ranked.sort("_row").select("id", "cluster", "F", pl.col("rank").cast(pl.Int64), "in_quota", "selected")
    return Selection(
        ids=chosen["id"].to_list(),
        table=table,
        rows=rows,
        alpha=alpha_count,
        n_total=n_total,
        n_unclustered=frame.height - n_total,
        info={
            "method": method,
            "rule": rule,
            "rule_text": RULE_TEXT[rule],
            "ranked_by": "a hash of (seed, id)" if method == "random" else "F desc (missing last), then id asc",
            **({"seed": int(seed)} if method == "random" else {}),
            **({"global_cut": cut} if rule == "reference" else {}),
            "alpha_given": int(alpha) if isinstance(alpha, Integral) else float(alpha),
            "alpha_kind": "count" if isinstance(alpha, Integral) else "fraction",
            "alpha_count": alpha_count,
            "n_selected": chosen.height,
            "n_clusters": len(sizes),
        },
    )


RULE_TEXT = {
    "paper": "quota = min(|D_i|, round(alpha*|D_i|/|D|)), round half to even (Algorithm 1)",
    "reference": "quota = min(|D_i|, max(1, floor(1.02*alpha*|D_i|/|D|))), then the global top alpha by F "
                 "(the public selection code: int(204*|D_i|/|D|) for alpha 200)",
}


def _input_frame(ids: Any, F: Any, clusters: Any, id_col: str, score_col: str, cluster_col: str) -> pl.DataFrame:
    """id, F (Float64) and cluster (Int64) from a DataFrame or from three sequences."""
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
    return frame


def _random_keys(ids: pl.Series, seed: int) -> pl.Series:
    """A uniform draw per row from a hash of (seed, id): independent of row order and of the other rows."""
    keys = [int.from_bytes(hashlib.sha256(f"{int(seed)}:{i}".encode()).digest()[:8], "big") / 2.0 ** 64
            for i in ids.cast(pl.String).to_list()]
    return pl.Series("_key", keys, dtype=pl.Float64)


def _global_cut(ranked: pl.DataFrame, keep: int) -> pl.DataFrame:
    """The reference rule's last step: of the rows within their quota, the best `keep` by the ranking key."""
    best = (ranked.filter(pl.col("in_quota")).sort(["_key", "id"], descending=[True, False], nulls_last=True)
            .head(keep).select("_row"))
    return ranked.with_columns(pl.col("_row").is_in(best["_row"].implode()).alias("selected"))

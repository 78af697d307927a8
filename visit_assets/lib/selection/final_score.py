"""The final score F of InstructionGPT-4 (paper section 3.2, Table 2) from the raw scores.

    F(x) = 0.53 C(x) + 0.10 L(x) + 0.10 R(x) + 0.27 G(x)

The paper says each score is "rated out of 100"; two scalings (`SCALINGS`, shared/docs/reference.md):

* "reference" (default): as the public code's full_score.py: C and G as they are (already out of
  100), L = 10 x characters / 1009, R the reward model's raw logit; no rescaling.
* "min-max": each score scaled to 0-100 over the rows selected from. It changes the effective
  weights (CLIP's narrow range, about 12-46 in the paper's data, is stretched about threefold),
  but keeps them meaningful when a score model's range differs from the paper's.

Missing values are never defaulted:

* a score absent for the whole dataset (None, e.g. no reward model configured, or all NaN) is
  dropped and the remaining weights are renormalised to sum 1;
* a value missing for one row (NaN, e.g. the judge reply did not parse): under min-max the row's F
  is the weighted mean over the scores it has (all are 0-100); under reference scaling the scores
  are on different ranges, so such a mean would shift the row up or down, and its F is missing
  (the row is ranked after every scored row, outcome `no_score`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, get_args

import numpy as np

from .scores import DEFAULT_WEIGHTS, scale_0_100

Scaling = Literal["reference", "min-max"]  # SelectionConfig.scaling
SCALINGS: tuple[str, ...] = get_args(Scaling)
# full_score.py's length score: 10 x characters / 1009 (shared/docs/reference.md)
REFERENCE_LENGTH_FACTOR = 10.0 / 1009.0


def combine(scores: Mapping[str, Any], weights: Mapping[str, float] | None = None, *,
            partial_rows: bool = True) -> tuple[np.ndarray, dict[str, float]]:
    """F = sum_j w_j s_j over already scaled scores (see `final_scores`).

    `scores` maps a name to an array (NaN where a row lacks the value) or None (absent for the
    whole dataset). Absent scores, and scores that are NaN on every row, are dropped and the
    remaining weights renormalised to sum 1: that is `weights_used` (0.0 for a dropped score).
    With `partial_rows`, the weights of the scores a row has are renormalised again for that row
    (right when every score is on one scale); without, a row missing any used score gets F = NaN.
    A row with no score at all gets F = NaN. Weights need not sum to 1 on input; negative weights
    and score names without a weight are errors.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(scores) - set(weights))
    if unknown:
        raise ValueError(f"no weight for score(s) {unknown}; weights are given for {sorted(weights)}")
    bad = {name: w for name, w in weights.items() if not (isinstance(w, (int, float)) and math.isfinite(w) and w >= 0)}
    if bad:
        raise ValueError(f"weights must be finite and >= 0, got {bad}")
    present: dict[str, np.ndarray] = {}
    n = None
    for name, s in scores.items():
        if s is None:
            continue
        arr = np.asarray(s, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"score {name!r} must be 1-D, got shape {arr.shape}")
        if n is None:
            n = arr.size
        elif arr.size != n:
            raise ValueError(f"score {name!r} has {arr.size} rows, expected {n}")
        if np.isfinite(arr).any() and weights[name] > 0:
            present[name] = arr
    total = sum(weights[name] for name in present)
    if not present or total <= 0:
        raise ValueError("no score with a positive weight is present: F cannot be computed")
    assert n is not None  # set by the first present score
    weights_used = {name: (weights[name] / total if name in present else 0.0) for name in weights}
    num = np.zeros(n)
    den = np.zeros(n)
    for name, arr in present.items():
        ok = np.isfinite(arr)
        num[ok] += weights_used[name] * arr[ok]
        den[ok] += weights_used[name]
    complete = np.isclose(den, 1.0) if not partial_rows else den > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        F = np.where(complete, num / np.where(den > 0, den, 1.0), np.nan)
    return F, weights_used


def reference_scale(name: str, values: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """A raw score as the public code weights it: the length score is 10 x characters / 1009,
    every other score its raw value (module docstring)."""
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64) \
        if not isinstance(values, np.ndarray) else values.astype(np.float64, copy=True)
    v[~np.isfinite(v)] = np.nan
    if name == "length":
        return v * REFERENCE_LENGTH_FACTOR, {"method": "reference", "transform": "10 x characters / 1009"}
    return v, {"method": "reference", "transform": "raw"}


def final_scores(raw: Mapping[str, Any], weights: Mapping[str, float] | None = None, scaling: str = "reference"
                 ) -> tuple[np.ndarray, dict[str, float], dict[str, dict[str, Any] | None]]:
    """Scale every raw score (`scaling`: module docstring), then `combine`: (F, weights_used, scaling records)."""
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    scaled: dict[str, np.ndarray | None] = {}
    records: dict[str, dict[str, Any] | None] = {}
    for name, values in raw.items():
        if values is None:
            scaled[name], records[name] = None, None
        elif scaling == "min-max":
            scaled[name], records[name] = scale_0_100(values)
        else:
            scaled[name], records[name] = reference_scale(name, values)
    F, used = combine(scaled, weights, partial_rows=scaling == "min-max")
    return F, used, records

"""Selection plots for materialization metadata: PNG bytes, drawn off-screen (Agg)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def selection_plot(F: Any, selected: Any, table_clusters: list[int], sizes: list[int], chosen: list[int]) -> bytes:
    """Left: F of every scored row, selected vs not. Right: per cluster, size and selected count."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # no pyplot: no global state shared between steps

    F = np.asarray(F, dtype=np.float64)
    sel = np.asarray(selected, dtype=bool)
    fig = Figure(figsize=(9, 3.2), dpi=90)
    left, right = fig.subplots(1, 2)
    ok = np.isfinite(F)
    lo, hi = (float(F[ok].min()), float(F[ok].max())) if ok.any() else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 21)  # F's own range: the reference scaling is not 0-100
    left.hist([F[ok & ~sel], F[ok & sel]], bins=bins, stacked=True, label=["not selected", "selected"],
              color=["#c8c8c8", "#2b7bba"])
    left.set(xlabel="final score F", ylabel="conversations", title="F distribution")
    left.legend(fontsize=8)
    x = np.arange(len(table_clusters))
    right.bar(x, sizes, color="#c8c8c8", label="cluster size")
    right.bar(x, chosen, color="#2b7bba", label="selected")
    right.set_xticks(x, [str(c) for c in table_clusters])
    right.set(xlabel="image cluster", ylabel="conversations", title="per-cluster quota")
    right.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()

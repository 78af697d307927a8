from fractions import Fraction

import numpy as np
import polars as pl
import pytest

from visit_assets.lib.selection.select import quotas, select

PAPER_SIZES = [1234, 880, 325, 300, 286, 177, 85, 80, 59, 13]  # reference.md, |D| = 3,439


def test_paper_quotas_by_hand():
    q = quotas(dict(enumerate(PAPER_SIZES)), 200)
    # 200*1234/3439 = 71.77 -> 72, 51.18 -> 51, 18.90 -> 19, 17.45 -> 17, 16.63 -> 17,
    # 10.29 -> 10, 4.94 -> 5, 4.65 -> 5, 3.43 -> 3, 0.756 -> 1
    assert [v[1] for v in q.values()] == [72, 51, 19, 17, 17, 10, 5, 5, 3, 1]
    assert q[0][0] == Fraction(246800, 3439)
    ids, clusters, F = [], [], []
    for c, size in enumerate(PAPER_SIZES):
        for j in range(size):
            ids.append(f"c{c}-{j:05d}")
            clusters.append(c)
            F.append(float(j))  # within each cluster the best rows are the last ones
    sel = select(ids, F, clusters, 200)
    assert len(sel.ids) == 200 and sel.n_total == 3439
    assert sel.table["quota"].to_list() == [72, 51, 19, 17, 17, 10, 5, 5, 3, 1]
    assert sel.table["selected"].to_list() == sel.table["quota"].to_list()
    assert sel.table["size"].to_list() == PAPER_SIZES
    assert sel.ids[:2] == ["c0-01233", "c0-01232"] and sel.ids[-1] == "c9-00012"


def test_paper_rule_rounds_and_may_give_a_small_cluster_nothing():
    q = quotas({0: 97, 1: 2, 2: 1}, 10)  # 9.7 -> 10, 0.2 -> 0, 0.1 -> 0: Algorithm 1 has no floor
    assert {c: v[1] for c, v in q.items()} == {0: 10, 1: 0, 2: 0}


def test_reference_rule_on_the_papers_clusters():
    # the public code: int(204 * |D_i| / 3439), at least 1: 73.2 -> 73, 52.2, 19.3, 17.8 -> 17,
    # 16.97 -> 16, 10.5 -> 10, 5.04 -> 5, 4.75 -> 4, 3.4998 -> 3, 0.77 -> 0 -> 1; 200 in all
    q = quotas(dict(enumerate(PAPER_SIZES)), 200, "reference")
    assert [v[1] for v in q.values()] == [73, 52, 19, 17, 16, 10, 5, 4, 3, 1]
    assert sum(v[1] for v in q.values()) == 200


def test_reference_rule_floors_then_cuts_to_the_global_top_alpha():
    ids = [f"a{i:02d}" for i in range(97)] + ["b0", "b1", "c0"]
    F = list(range(100, 197)) + [50.0, 40.0, 10.0]  # cluster 2's only row is the worst overall
    clusters = [0] * 97 + [1, 1, 2]
    sel = select(ids, F, clusters, 10, rule="reference")
    # floor(10.2 * 97/100) = 9, floor(0.204) -> 1, floor(0.102) -> 1: 11 within quota, cut to 10
    assert sel.table["quota"].to_list() == [9, 1, 1]
    assert len(sel.ids) == 10 and "c0" not in sel.ids and "b0" in sel.ids
    row = sel.rows.filter(pl.col("id") == "c0").row(0, named=True)
    assert row["in_quota"] and not row["selected"]
    assert sel.info["rule"] == "reference" and "204" in sel.info["rule_text"]
    with pytest.raises(ValueError, match="rule"):
        select(ids, F, clusters, 10, rule="nearest")


def test_ablation_global_ignores_clusters_but_not_the_pool():
    ids = [f"r{i}" for i in range(10)]
    F = [float(i) for i in range(10)]
    clusters = [0] * 8 + [1, None]  # one small cluster, one row without an image cluster
    per_cluster = select(ids, F, clusters, 3)  # quotas: 8*3/9 = 2.67 -> 3, 0.33 -> 0
    assert per_cluster.ids == ["r7", "r6", "r5"]
    flat = select(ids, F, clusters, 3, method="global")
    assert flat.ids == ["r8", "r7", "r6"] and flat.info["method"] == "global"
    assert flat.n_total == per_cluster.n_total == 9 and flat.n_unclustered == 1  # D is the same for every method
    assert "r9" not in select(ids, F, clusters, 1.0, method="random").ids


def test_reference_cut_keeps_at_least_one_row():
    sel = select(["a", "b", "c", "d"], [1.0, 2.0, 3.0, 4.0], [0, 0, 1, 1], 0.1, rule="reference")  # 0.4 rows
    assert sel.ids == ["d"] and sel.info["global_cut"] == 1


def test_ablation_random_is_seeded_order_free_and_ignores_scores():
    ids = [f"r{i:03d}" for i in range(300)]
    F = np.arange(300, dtype=float)
    clusters = np.repeat(np.arange(3), 100)
    a = select(ids, F, clusters, 30, method="random", seed=1)
    assert len(a.ids) == 30 and a.info["seed"] == 1
    assert set(a.ids) == set(select(ids[::-1], F[::-1], clusters[::-1], 30, method="random", seed=1).ids)
    assert set(a.ids) != set(select(ids, F, clusters, 30, method="random", seed=2).ids)
    assert set(a.ids) != {f"r{i:03d}" for i in range(270, 300)}  # not the top F
    # a row's draw depends on its id only: one more row changes the sample by at most that row
    more = select(ids + ["extra"], np.append(F, 0.0), np.append(clusters, 0), 30, method="random", seed=1)
    assert len(set(a.ids) - set(more.ids)) <= 1 and set(more.ids) - set(a.ids) <= {"extra"}
    with pytest.raises(ValueError, match="method"):
        select(ids, F, clusters, 30, method="kmeans")


def test_round_half_to_even_on_exact_fractions():
    q = quotas({0: 5, 1: 3, 2: 2}, 5)  # 2.5 -> 2, 1.5 -> 2, 1.0 -> 1
    assert {c: v[1] for c, v in q.items()} == {0: 2, 1: 2, 2: 1}
    assert quotas({0: 5, 1: 3, 2: 2}, 0.5) == q  # the fraction 0.5 of 10 rows is alpha 5
    q = quotas({0: 25, 1: 15}, 0.1)  # alpha = 4: 2.5 -> 2 and 1.5 -> 2, exactly (0.1 is 1/10)
    assert {c: v[1] for c, v in q.items()} == {0: 2, 1: 2}
    assert q[0][0] == Fraction(5, 2)
    q = quotas({0: 7, 1: 7}, 7)  # 3.5 -> 4 each
    assert {c: v[1] for c, v in q.items()} == {0: 4, 1: 4}


def test_alpha_count_vs_fraction_and_cap():
    ids = [f"r{i}" for i in range(10)]
    F = list(range(10))
    clusters = [0] * 6 + [1] * 4
    by_count = select(ids, F, clusters, 3)  # 1.8 -> 2, 1.2 -> 1
    assert by_count.table["quota"].to_list() == [2, 1] and by_count.alpha == 3.0
    assert by_count.ids == ["r5", "r4", "r9"]
    by_frac = select(ids, F, clusters, 0.3)  # 30 % of 10 rows = 3
    assert by_frac.ids == by_count.ids and by_frac.alpha == 3.0
    assert by_frac.info["alpha_kind"] == "fraction"
    everything = select(ids, F, clusters, 1.0)
    assert sorted(everything.ids) == sorted(ids)
    capped = select(ids, F, clusters, 50)  # 30 and 20 capped at the cluster sizes
    assert capped.table["quota"].to_list() == [6, 4] and len(capped.ids) == 10
    assert capped.table["quota_exact"].to_list() == [30.0, 20.0]


def test_ties_by_id_and_nan_last():
    sel = select(["b", "a", "c", "d"], [1.0, 1.0, 1.0, np.nan], [0, 0, 0, 0], 2)
    assert sel.ids == ["a", "b"]
    rows = {r["id"]: r for r in sel.rows.iter_rows(named=True)}
    assert [rows[i]["rank"] for i in "abcd"] == [0, 1, 2, 3]
    sel = select(["x", "y"], [np.nan, -5.0], [0, 0], 1)  # NaN ranks after any real score
    assert sel.ids == ["y"]
    assert sel.table["n_missing_score"].to_list() == [1]
    sel = select([3, 1, 2], [0.5, 0.5, 0.5], [0, 0, 0], 2)  # integer ids sort numerically
    assert sel.ids == [1, 2]


def test_order_of_input_rows_does_not_matter():
    rng = np.random.default_rng(0)
    n = 500
    ids = [f"{i:04x}" for i in range(n)]
    F = rng.integers(0, 5, n).astype(float)  # many ties
    F[rng.choice(n, 40, replace=False)] = np.nan
    clusters = rng.integers(0, 7, n)
    a = select(ids, F, clusters, 60)
    perm = rng.permutation(n)
    b = select([ids[i] for i in perm], F[perm], clusters[perm], 60)
    assert a.ids == b.ids
    assert a.table.equals(b.table)
    assert a.rows["selected"].to_list() == [a.ids.count(i) == 1 for i in ids]


def test_frame_input_and_unclustered_rows():
    frame = pl.DataFrame({
        "row_id": ["a", "b", "c", "d", "e"],
        "score": [9.0, 8.0, 7.0, float("nan"), 10.0],
        "cl": [0.0, 0.0, 1.0, 1.0, float("nan")],  # "e": image without an embedding
    })
    sel = select(frame, alpha=2, id_col="row_id", score_col="score", cluster_col="cl")
    assert sel.ids == ["a", "c"] and sel.n_total == 4 and sel.n_unclustered == 1
    assert sel.table["cluster"].to_list() == [0, 1]
    arrays = select(["a", "b", "c", "d", "e"], [9.0, 8.0, 7.0, np.nan, 10.0], [0, 0, 1, 1, -1], 2)
    assert arrays.ids == sel.ids and arrays.table.equals(sel.table)
    assert select(["a", "b"], [1.0, 2.0], [None, 0], 5).ids == ["b"]


def test_bad_inputs():
    with pytest.raises(TypeError):
        select(["a"], [1.0], [0], True)
    with pytest.raises(TypeError):
        select(["a"], [1.0], [0], "200")
    for alpha in (0, -3, 1.5, 0.0, float("nan")):
        with pytest.raises(ValueError):
            select(["a"], [1.0], [0], alpha)
    with pytest.raises(ValueError, match="unique"):
        select(["a", "a"], [1.0, 2.0], [0, 0], 1)
    with pytest.raises(ValueError, match="length"):
        select(["a", "b"], [1.0], [0, 0], 1)
    with pytest.raises(ValueError, match="integers"):
        select(["a"], [1.0], [0.5], 1)


def test_empty_and_all_unclustered():
    sel = select([], [], [], 5)
    assert sel.ids == [] and sel.table.height == 0 and sel.n_total == 0
    sel = select(["a"], [1.0], [-1], 5)
    assert sel.ids == [] and sel.n_unclustered == 1

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from visit_assets.lib.mminstruct.cluster import (
    cluster_instructions,
    effective_k,
    group_clusters,
    mark_duplicate_merges,
    merge_requests,
    merged_row,
)
from visit_assets.lib.mminstruct.generate import instruction_id

PARAPHRASES = [
    ["Write a haiku about this image.", "Compose a haiku inspired by this picture.",
     "Create a three-line haiku capturing this photo."],
    ["Make a shopping list of the items needed to recreate this scene.",
     "List the things you would need to buy to recreate this scene at home.",
     "Write a shopping list for recreating what is shown in this image."],
    ["Identify the safety hazards in this image and how to fix them.",
     "Point out any dangers in this scene and suggest ways to reduce them.",
     "What safety risks are visible in this photo, and how could they be avoided?"],
    ["Write an Instagram post with hashtags for this photo.",
     "Compose a social media caption with emojis and hashtags for this picture.",
     "Draft a fun social media post to share this image with followers."],
]


@pytest.fixture(scope="module")
def paraphrase_data(embedder):
    texts = [t for group in PARAPHRASES for t in group]
    truth = [i for i, group in enumerate(PARAPHRASES) for _ in group]
    return texts, truth, embedder.encode(texts)


def test_clusters_merge_paraphrases_with_real_embedder(paraphrase_data):
    texts, truth, vecs = paraphrase_data
    labels, info = cluster_instructions(vecs, k=len(PARAPHRASES), seed=0)
    assert info.algorithm == "kmeans" and info.k_used == 4 and info.n == 12
    assert adjusted_rand_score(truth, labels) == 1.0
    assert labels[0] == 0, "labels are numbered by first row"
    assert sorted(info.sizes) == [3, 3, 3, 3]


def test_clustering_is_deterministic(paraphrase_data):
    _, _, vecs = paraphrase_data
    a, ia = cluster_instructions(vecs, k=5, seed=11)
    b, ib = cluster_instructions(vecs, k=5, seed=11)
    assert np.array_equal(a, b) and ia == ib
    m1, info = cluster_instructions(vecs, k=4, seed=2, minibatch_above=0)
    m2, _ = cluster_instructions(vecs, k=4, seed=2, minibatch_above=0)
    assert info.algorithm == "minibatch_kmeans" and np.array_equal(m1, m2)


@pytest.mark.parametrize("n, k, distinct, expected", [
    (0, 300, None, (0, None)),
    (1, 300, None, (1, "n // min_per_cluster")),
    (5, 300, None, (2, "n // min_per_cluster")),
    (50_000, 300, None, (300, None)),
    (10, 300, 3, (3, "distinct rows")),
    (10, 2, 3, (2, None)),
])
def test_k_capping(n, k, distinct, expected):
    assert effective_k(n, k, distinct) == expected


def test_k_capping_on_tiny_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 8)).astype(np.float32)
    labels, info = cluster_instructions(x, k=300, seed=0)
    assert info.k_used == 2 and info.k_requested == 300 and set(labels.tolist()) == {0, 1}
    same = np.repeat(x[:1], 6, axis=0)
    labels, info = cluster_instructions(same, k=300, seed=0)
    assert info.k_used == 1 and info.n_distinct == 1 and labels.tolist() == [0] * 6
    labels, info = cluster_instructions(np.zeros((0, 8)), k=300, seed=0)
    assert labels.size == 0 and info.k_used == 0


def test_group_and_merge_requests_keep_membership(paraphrase_data):
    texts, _, vecs = paraphrase_data
    ids = [instruction_id(t) for t in texts]
    labels, _ = cluster_instructions(vecs, k=4, seed=0)
    clusters = group_clusters(ids, texts, vecs, labels)
    assert sorted(i for c in clusters for i in c.member_ids) == sorted(ids)
    jobs = merge_requests(clusters, max_examples=2)
    assert len(jobs) == 4
    for c, job in zip(clusters, jobs, strict=True):
        assert job.member_ids == c.member_ids and job.shown_ids == c.member_ids[:2]
        assert job.cluster_id == c.cluster_id and job.request.tag == c.cluster_id
        user = job.request.messages[-1]["content"]
        assert c.member_texts[0] in user and c.member_texts[2] not in user
        assert list(c.distances) == sorted(c.distances)
    again = group_clusters(ids[::-1], texts[::-1], vecs[::-1], labels[::-1])
    assert {c.cluster_id for c in again} == {c.cluster_id for c in clusters}, "cluster ids are content hashes of members"


def test_merged_row_parses(paraphrase_data):
    from visit_assets.lib.llm.types import LLMResult

    texts, _, vecs = paraphrase_data
    ids = [instruction_id(t) for t in texts]
    labels, _ = cluster_instructions(vecs, k=4, seed=0)
    job = merge_requests(group_clusters(ids, texts, vecs, labels))[0]
    res = LLMResult('Merged instruction: "Write a haiku that captures this image."', 10, 9, "stop", "ok")
    row = merged_row(job, res)
    assert row["instruction"] == "Write a haiku that captures this image." and row["status"] == "ok"
    assert row["member_ids"] == list(job.member_ids) and row["prompt_id"] == "mminstruct.cluster_merge"


def test_clusters_merged_into_the_same_instruction_keep_one(paraphrase_data):
    from visit_assets.lib.llm.types import LLMResult

    texts, _, vecs = paraphrase_data
    ids = [instruction_id(t) for t in texts]
    labels, _ = cluster_instructions(vecs, k=4, seed=0)
    jobs = merge_requests(group_clusters(ids, texts, vecs, labels))
    replies = ["Write a haiku about this image.", "write a haiku about this image", "Describe the safety risks here.",
               ""]
    rows = [merged_row(j, LLMResult(t, 10, 9, "stop", "ok")) for j, t in zip(jobs, replies, strict=True)]
    marked = mark_duplicate_merges(rows)
    haiku = [r for r in marked if r["instruction_id"] == instruction_id("Write a haiku about this image.")]
    assert sorted(r["status"] for r in haiku) == ["duplicate", "ok"]  # the dedupe key ignores case and the stop
    kept = next(r for r in haiku if r["status"] == "ok")
    assert kept["cluster_id"] == min(r["cluster_id"] for r in haiku)
    assert next(r for r in haiku if r["status"] == "duplicate")["duplicate_of"] == kept["cluster_id"]
    assert [r["status"] for r in marked][2:] == ["ok", rows[3]["status"]] and rows[3]["status"] != "ok"
    assert mark_duplicate_merges(rows[::-1]) == marked[::-1]  # the same one kept in any order

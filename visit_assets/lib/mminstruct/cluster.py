"""Stage 2, consolidation: k-means over sentence embeddings of the generated instructions, then
one LLM merge per cluster into a general instruction (MM-Instruct section 2.1, k = 300).

k on small data: k_used = max(1, min(k, n // min_per_cluster, n_distinct)) with
min_per_cluster = 2, i.e. clusters average at least two instructions (the paper's ~50k -> 300 is
~170 each), and k never exceeds the number of distinct embeddings (k-means cannot fill more).
KMeans runs for up to `minibatch_above` rows, MiniBatchKMeans above that; both seeded, so labels
are a pure function of (embeddings, k, seed). Labels are renumbered by each cluster's first row,
so they do not depend on the library's internal numbering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from visit_assets.lib.ids import content_hash
from visit_assets.lib.llm.types import LLMRequest, LLMResult, SamplingParams
from visit_assets.lib.mminstruct.generate import instruction_id, parse_result
from visit_assets.lib.mminstruct.prompts import CLUSTER_MERGE, PromptTemplate, load_prompt

DEFAULT_K = 300  # paper
MIN_PER_CLUSTER = 2
MINIBATCH_ABOVE = 20_000  # rows; MiniBatchKMeans above this
MINIBATCH_SIZE = 4096
N_INIT = 3
MAX_MERGE_EXAMPLES = 12  # members shown to the merge prompt (nearest the centroid first)
MERGE_PARAMS = SamplingParams(temperature=0.0, max_tokens=96)


@dataclass(frozen=True)
class ClusterInfo:
    algorithm: str  # "kmeans" | "minibatch_kmeans" | "single" (k_used == 1) | "none" (no rows)
    k_requested: int
    k_used: int
    n: int
    n_distinct: int
    seed: int
    inertia: float
    sizes: tuple[int, ...]  # by label
    capped_by: str | None  # None, "n // min_per_cluster" or "distinct rows"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sizes"] = list(self.sizes)
        return d


def effective_k(n: int, k: int, n_distinct: int | None = None,
                min_per_cluster: int = MIN_PER_CLUSTER) -> tuple[int, str | None]:
    """(k actually used, what capped it). See the module docstring."""
    if n <= 0:
        return 0, None
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    by_size = max(1, n // max(1, min_per_cluster))
    distinct = n if n_distinct is None else max(1, n_distinct)
    used = min(k, by_size, distinct)
    if used == k:
        return k, None
    return used, ("distinct rows" if used == distinct and distinct < by_size else "n // min_per_cluster")


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters in order of their first row."""
    order: dict[int, int] = {}
    for lab in labels.tolist():
        order.setdefault(lab, len(order))
    return np.array([order[lab] for lab in labels.tolist()], dtype=np.int64)


def cluster_instructions(
    embeddings: np.ndarray,
    k: int = DEFAULT_K,
    seed: int = 0,
    *,
    min_per_cluster: int = MIN_PER_CLUSTER,
    minibatch_above: int = MINIBATCH_ABOVE,
    n_init: int = N_INIT,
) -> tuple[np.ndarray, ClusterInfo]:
    """Labels (int64 [n], 0..k_used-1) and a summary. Embeddings: [n, dim] (L2-normalised rows
    make Euclidean k-means rank by cosine)."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D, got shape {x.shape}")
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), ClusterInfo("none", k, 0, 0, 0, seed, 0.0, (), None)
    n_distinct = int(np.unique(np.round(x, 6), axis=0).shape[0])
    k_used, capped_by = effective_k(n, k, n_distinct, min_per_cluster)
    if k_used == 1:
        labels = np.zeros(n, dtype=np.int64)
        inertia = float(((x - x.mean(axis=0)) ** 2).sum())
        algorithm = "single"
    else:
        if n > minibatch_above:
            from sklearn.cluster import MiniBatchKMeans

            model = MiniBatchKMeans(n_clusters=k_used, random_state=seed, n_init=n_init, batch_size=MINIBATCH_SIZE)
            algorithm = "minibatch_kmeans"
        else:
            from sklearn.cluster import KMeans

            model = KMeans(n_clusters=k_used, random_state=seed, n_init=n_init)
            algorithm = "kmeans"
        labels = _relabel(model.fit_predict(x))
        inertia = float(model.inertia_)
    sizes = tuple(int(c) for c in np.bincount(labels, minlength=k_used))
    return labels, ClusterInfo(algorithm, int(k), int(k_used), n, n_distinct, int(seed), inertia, sizes, capped_by)


@dataclass(frozen=True)
class Cluster:
    """One cluster with its full membership (lineage) ordered nearest-to-centroid first."""

    cluster_id: str  # content hash of the sorted member ids
    label: int
    member_ids: tuple[str, ...]
    member_texts: tuple[str, ...]
    distances: tuple[float, ...]  # Euclidean distance of each member to the cluster mean

    @property
    def size(self) -> int:
        return len(self.member_ids)


def group_clusters(ids: Sequence[str], texts: Sequence[str], embeddings: np.ndarray, labels: np.ndarray) -> list[Cluster]:
    """Clusters in label order; members sorted by distance to the cluster mean, then id."""
    if not len(ids) == len(texts) == len(labels) == len(embeddings):
        raise ValueError("ids, texts, embeddings and labels must have the same length")
    x = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels)
    out = []
    for lab in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == lab)
        dist = np.linalg.norm(x[idx] - x[idx].mean(axis=0), axis=1)
        order = sorted(range(len(idx)), key=lambda j: (round(float(dist[j]), 6), ids[int(idx[j])]))
        member_ids = tuple(ids[idx[j]] for j in order)
        out.append(Cluster(
            cluster_id=content_hash("mminstruct.cluster", sorted(member_ids)),
            label=int(lab),
            member_ids=member_ids,
            member_texts=tuple(texts[idx[j]] for j in order),
            distances=tuple(round(float(dist[j]), 6) for j in order),
        ))
    return out


@dataclass(frozen=True)
class MergeJob:
    cluster_id: str
    label: int
    member_ids: tuple[str, ...]  # every member (lineage)
    shown_ids: tuple[str, ...]  # the members that were put in the prompt
    request: LLMRequest
    prompt: PromptTemplate

    def lineage(self) -> dict[str, Any]:
        return {"cluster_id": self.cluster_id, "label": self.label, "member_ids": list(self.member_ids),
                "shown_ids": list(self.shown_ids), **self.prompt.lineage()}


def merge_requests(
    clusters: Sequence[Cluster],
    *,
    max_examples: int = MAX_MERGE_EXAMPLES,
    params: SamplingParams = MERGE_PARAMS,
    prompt: PromptTemplate | None = None,
) -> list[MergeJob]:
    """One merge request per cluster showing its `max_examples` most central members."""
    prompt = prompt or load_prompt(CLUSTER_MERGE)
    jobs = []
    for c in clusters:
        shown = list(zip(c.member_ids, c.member_texts, strict=True))[:max_examples]
        seed = int(content_hash("mminstruct.merge", c.cluster_id)[:7], 16)  # < 2**28
        request = prompt.request(params=replace(params, seed=seed), tag=c.cluster_id,
                                 examples=[{"text": t} for _, t in shown])
        jobs.append(MergeJob(c.cluster_id, c.label, c.member_ids, tuple(i for i, _ in shown), request, prompt))
    return jobs


def merged_row(job: MergeJob, result: LLMResult) -> dict[str, Any]:
    """One output row of the merge stage: the general instruction (or why there is none) + lineage."""
    instruction, status = parse_result(result)
    return {
        **job.lineage(),
        "instruction": instruction,
        "instruction_id": instruction_id(instruction) if instruction else None,
        "status": status,
        **result.row_fields(),
    }


DUPLICATE = "duplicate"  # a merged instruction whose text another cluster's merge already gave


def mark_duplicate_merges(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exact-duplicate removal after the merge (MM-Instruct section 2.2): two clusters merged into the
    same instruction (the dedupe key of `normalise_instruction`) keep one; the others keep their row,
    status "duplicate" and `duplicate_of` the kept row's cluster_id. Which one is kept does not
    depend on row order: the smallest cluster_id."""
    first: dict[str, str] = {}
    for r in sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["cluster_id"]):
        first.setdefault(r["instruction_id"], r["cluster_id"])
    out = []
    for r in rows:
        keeper = first.get(r["instruction_id"]) if r["status"] == "ok" else None
        duplicate = keeper is not None and keeper != r["cluster_id"]
        out.append({**r, "status": DUPLICATE if duplicate else r["status"], "duplicate_of": keeper if duplicate else None})
    return out

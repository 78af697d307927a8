"""Stage 3, matching: pick one instruction per image by multinomial sampling weighted by similarity
(MM-Instruct section 2.2; the paper uses CLIP ViT-L image x text cosine similarities).

Weights. The paper says the cosine similarities are the sampling weights. Raw cosines are nearly
flat (CLIP image-text cosines sit in ~0.1-0.4), so weights proportional to them would be close to
uniform over all instructions; this module uses a softmax instead:

    p_j = exp(s_j / T) / sum_i exp(s_i / T)

T = 0.01 is CLIP's own learned logit scale (100), i.e. the probabilities CLIP assigns in
zero-shot classification. Larger T flattens the distribution (T -> inf: uniform), smaller T
sharpens it (T -> 0: always the top match). For the "description-text" matcher (sentence
embeddings of the image description vs the instructions, cosines spread over ~0-0.8) T around
0.05 gives a comparable spread. `top_k` optionally restricts sampling to the k most similar.

The matcher name ("clip-image" or "description-text") says which vectors were compared; it is
recorded with every match. Each image has its own rng (see rng.py), so a match depends only on
the image, the instruction set and the base seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visit_assets.lib.mminstruct.rng import derive_seed

STAGE = "match"
CLIP_IMAGE = "clip-image"
DESCRIPTION_TEXT = "description-text"
MATCHERS = (CLIP_IMAGE, DESCRIPTION_TEXT)
DEFAULT_TEMPERATURE = {CLIP_IMAGE: 0.01, DESCRIPTION_TEXT: 0.05}


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def similarity(image_vecs: np.ndarray, instruction_vecs: np.ndarray) -> np.ndarray:
    """Cosine similarity matrix float32 [n_images, n_instructions] (rows renormalised; zero rows give 0)."""
    a, b = _unit_rows(image_vecs), _unit_rows(instruction_vecs)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"dimension mismatch: images {a.shape[1]}, instructions {b.shape[1]}")
    return (a @ b.T).astype(np.float32, copy=False)


def top_k(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores), each [n_rows, min(k, n_cols)], best first; ties go to the lower index."""
    m = np.asarray(matrix)
    if m.ndim == 1:
        m = m[None, :]
    k = max(0, min(int(k), m.shape[1]))
    idx = np.argsort(-m, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(m, idx, axis=1)


def softmax_weights(sims_row: np.ndarray, temperature: float, top_k: int | None = None) -> np.ndarray:
    """Sampling distribution (float64, sums to 1) over one row of similarities; zero outside top_k."""
    s = np.asarray(sims_row, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("no instructions to sample from")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not np.all(np.isfinite(s)):
        raise ValueError("similarities must be finite")
    mask = np.ones(s.size, dtype=bool)
    if top_k is not None and 0 < top_k < s.size:
        mask[:] = False
        mask[np.argsort(-s, kind="stable")[:top_k]] = True
    z = np.where(mask, (s - s[mask].max()) / temperature, -np.inf)
    w = np.exp(z)
    return w / w.sum()


def sample_instruction(
    sims_row: np.ndarray, temperature: float, rng: np.random.Generator, *, top_k: int | None = None
) -> tuple[int, np.ndarray]:
    """(sampled column, the distribution it was drawn from)."""
    p = softmax_weights(sims_row, temperature, top_k)
    return int(rng.choice(p.size, p=p)), p


@dataclass(frozen=True)
class Match:
    image_id: str
    matcher: str
    temperature: float
    rng_seed: int
    index: int  # column of the chosen instruction
    instruction_id: str
    similarity: float
    probability: float
    probabilities: np.ndarray  # the whole distribution (float64 over the instruction columns)
    similarities: np.ndarray

    def entropy(self) -> float:
        p = self.probabilities[self.probabilities > 0]
        return float(-(p * np.log(p)).sum())

    def as_row(self, instruction_ids: Sequence[str], keep_top: int = 5, full: bool = False) -> dict[str, Any]:
        """A storable row: the choice, its probability, the top candidates, optionally the full distribution."""
        idx, _ = top_k(self.similarities, keep_top)
        row: dict[str, Any] = {
            "image_id": self.image_id,
            "matcher": self.matcher,
            "temperature": self.temperature,
            "rng_seed": self.rng_seed,
            "instruction_id": self.instruction_id,
            "similarity": self.similarity,
            "probability": self.probability,
            "entropy": round(self.entropy(), 6),
            "top_instruction_ids": [instruction_ids[int(j)] for j in idx[0]],
            "top_similarities": [float(self.similarities[int(j)]) for j in idx[0]],
            "top_probabilities": [float(self.probabilities[int(j)]) for j in idx[0]],
        }
        if full:
            row["probabilities"] = self.probabilities.tolist()
        return row


def match_images(
    image_ids: Sequence[str],
    sims: np.ndarray,
    instruction_ids: Sequence[str],
    *,
    matcher: str,
    seed: int,
    temperature: float | None = None,
    top_k: int | None = None,
) -> list[Match]:
    """One sampled instruction per image (row of `sims`), each with its own seeded rng."""
    if matcher not in MATCHERS:
        raise ValueError(f"unknown matcher {matcher!r}; choose one of {MATCHERS}")
    sims = np.asarray(sims)
    if sims.shape != (len(image_ids), len(instruction_ids)):
        raise ValueError(f"sims has shape {sims.shape}, expected ({len(image_ids)}, {len(instruction_ids)})")
    t = DEFAULT_TEMPERATURE[matcher] if temperature is None else float(temperature)
    out = []
    for row, image_id in enumerate(image_ids):
        rng_seed = derive_seed(STAGE, [matcher, image_id], seed)
        j, p = sample_instruction(sims[row], t, np.random.default_rng(rng_seed), top_k=top_k)
        out.append(Match(image_id, matcher, t, rng_seed, j, instruction_ids[j], float(sims[row, j]), float(p[j]), p,
                         sims[row]))
    return out

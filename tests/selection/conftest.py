"""Fixtures for the InstructionGPT-4 selection tests: synthetic CLIP-like embeddings."""

from __future__ import annotations

import numpy as np
import pytest

# Relative cluster sizes of the paper's public code on its 3,439 examples (shared/docs/reference.md):
# imbalanced on purpose, down to a 0.4 % cluster.
PAPER_CLUSTER_SIZES = (1234, 880, 325, 300, 286, 177, 85, 80, 59, 13)


def gaussian_mixture(n: int, d: int = 512, k: int = 10, seed: int = 0, noise: float = 2.5,
                     shared: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors around k centres that share a common direction (as CLIP image embeddings
    do), with cluster proportions from PAPER_CLUSTER_SIZES (k <= 10). noise is the expected norm
    of each row's isotropic noise; at 2.5 the 10-NN graph is connected and exact spectral
    clustering still recovers the mixture (ARI ~0.99)."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(d)
    common /= np.linalg.norm(common)
    centres = rng.standard_normal((k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    centres = shared * common + np.sqrt(1 - shared**2) * centres
    p = np.asarray(PAPER_CLUSTER_SIZES[:k], dtype=float)
    y = rng.choice(k, size=n, p=p / p.sum())
    X = centres[y] + noise * rng.standard_normal((n, d)) / np.sqrt(d)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y


@pytest.fixture(scope="session")
def mixture_3000() -> tuple[np.ndarray, np.ndarray]:
    return gaussian_mixture(3000, seed=1)


@pytest.fixture
def small_mixture() -> tuple[np.ndarray, np.ndarray]:
    return gaussian_mixture(300, d=32, k=3, seed=2, noise=1.0)


@pytest.fixture
def make_mixture():
    return gaussian_mixture

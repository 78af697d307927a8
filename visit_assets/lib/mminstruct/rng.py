"""Per-item random streams: the seed of an item is a content hash of (stage, item key, base seed).

An image's draws therefore depend only on the image and the run's base seed, never on batch order,
partitioning or which other images are in the run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visit_assets.lib.ids import content_hash

SEED_BITS = 31  # fits every backend's seed field (llama.cpp takes uint32, some servers int32)


def derive_seed(stage: str, key: Any, base_seed: int) -> int:
    """A non-negative int < 2**31 from the stage name, the item key (e.g. image id) and the base seed."""
    return int(content_hash("mminstruct.rng", stage, key, int(base_seed)), 16) & ((1 << SEED_BITS) - 1)


def item_rng(stage: str, key: Any, base_seed: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(stage, key, base_seed))

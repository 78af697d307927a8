"""Where things live, from the environment, with laptop-friendly defaults under ./visit_data."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("VISIT_HOME", "visit_data")).resolve()


def store_root() -> Path:
    return Path(os.environ.get("VISIT_STORE", home() / "store")).resolve()


def datasets_root() -> Path:
    return Path(os.environ.get("VISIT_DATASETS", home() / "datasets")).resolve()


def n_shards() -> int:
    """Static shard count; part of the partitions definition, so changing it means a new layout."""
    return int(os.environ.get("VISIT_SHARDS", "4"))


def sensor_interval_s() -> int:
    """Seconds between two evaluations of each sensor (folder, seeds, automation)."""
    return int(os.environ.get("VISIT_SENSOR_INTERVAL_S", "30"))


def reingest_cron() -> str:
    """When the `nightly_reingest` schedule (off by default) re-ingests every dataset."""
    return os.environ.get("VISIT_REINGEST_CRON", "0 3 * * *")


def sample_dataset() -> Path:
    return Path(__file__).resolve().parent / "sample_data" / "datasets" / "sample"

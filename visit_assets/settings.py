"""Where things live, from the environment, with laptop-friendly defaults under ./visit_data. A variable
set to an empty string counts as unset."""

from __future__ import annotations

import os
from pathlib import Path


def env(name: str) -> str | None:
    """A variable's value, stripped; unset and empty alike are None (a blanked variable counts as unset)."""
    value = os.environ.get(name, "").strip()
    return value or None


def home() -> Path:
    return Path(env("VISIT_HOME") or "visit_data").resolve()


def store_root() -> Path:
    return Path(env("VISIT_STORE") or home() / "store").resolve()


def exports_root() -> Path:
    """Where `visit_export` writes its folders (StoreResource.exports_root overrides it)."""
    return home() / "exports"


def datasets_root() -> Path:
    return Path(env("VISIT_DATASETS") or home() / "datasets").resolve()


VIEWER_PORT = 8700  # `visit-assets viewer` / `make viewer`


def viewer_url() -> str:
    """Where the data viewer is served: materialization metadata links to its pages from here."""
    return (env("VISIT_VIEWER_URL") or f"http://127.0.0.1:{VIEWER_PORT}").rstrip("/")


def n_shards() -> int:
    """Static shard count; part of the partitions definition, so changing it means a new layout."""
    return int(env("VISIT_SHARDS") or 4)


def sensor_interval_s() -> int:
    """Seconds between two evaluations of each sensor (folder, seeds, automation)."""
    return int(env("VISIT_SENSOR_INTERVAL_S") or 30)


def reingest_cron() -> str:
    """When the `nightly_reingest` schedule (off by default) re-ingests every dataset."""
    return env("VISIT_REINGEST_CRON") or "0 3 * * *"


def llm_step_retries() -> int:
    """How many times Dagster retries a model step that failed on a transient LLM outage (0: never);
    read when the definitions load (visit_assets/defs/llm/retries.py says why these numbers)."""
    return int(env("VISIT_LLM_STEP_RETRIES") or 3)


def llm_step_retry_delay_s() -> float:
    """The base delay of those retries; they back off exponentially from it (about 1x, 3x, 7x, with jitter)."""
    return float(env("VISIT_LLM_STEP_RETRY_DELAY_S") or 30)


def sample_dataset() -> Path:
    return Path(__file__).resolve().parent / "sample_data" / "datasets" / "sample"

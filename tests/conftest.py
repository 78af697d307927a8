"""Shared fixtures: a private VISIT_HOME with the embedded sample dataset installed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from visit_assets import settings

# No test waits for a step retry (visit_assets/defs/llm/retries.py): the LLM steps' retry policy is
# built when the definitions are first imported, after this, with no delay between attempts.
os.environ.setdefault("VISIT_LLM_STEP_RETRY_DELAY_S", "0")

BAD = Path(__file__).parent / "data" / "bad"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """VISIT_HOME in tmp, holding datasets/sample (a copy, so tests may edit it)."""
    monkeypatch.setenv("VISIT_HOME", str(tmp_path))
    for var in ("VISIT_STORE", "VISIT_DATASETS"):
        monkeypatch.delenv(var, raising=False)
    shutil.copytree(settings.sample_dataset(), tmp_path / "datasets" / "sample")
    return tmp_path


@pytest.fixture
def sample_dir() -> Path:
    return settings.sample_dataset()


@pytest.fixture
def bad_dir() -> Path:
    return BAD

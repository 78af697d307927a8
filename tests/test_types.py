"""The type checker finds nothing: mypy with the settings of pyproject.toml's [tool.mypy] over visit_assets/
(~35 s from a fresh cache on 2 cores, a few seconds with the cache of an earlier run in .mypy_cache/)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_mypy_is_clean():
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mypy found problems (`.venv/bin/python -m mypy` lists them):\n{proc.stdout}{proc.stderr}"

"""The linter finds nothing: ruff with the rules and scope of pyproject.toml's [tool.ruff]
(pyflakes, pycodestyle, isort, bugbear, pyupgrade over visit_assets/, tests/, bench/, scripts/)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f"ruff check found problems (`.venv/bin/ruff check --fix` repairs the safe ones):\n{proc.stdout}{proc.stderr}")

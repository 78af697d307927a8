"""Set-up self-check (visit_assets/setup_check.py, called by scripts/env.sh): every native component
runs in a child process; a crash fails the set-up naming the component, the CPU flags and the fix,
and leaves the environment unmarked. The llama.cpp build is the portable one unless asked otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from visit_assets import setup_check

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def run_check(**env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "visit_assets.setup_check"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=600)


def test_every_component_passes_and_llama_cpp_is_the_portable_build():
    proc = run_check()
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[1]: line for line in proc.stdout.splitlines() if line.strip().startswith("ok ")}
    assert set(lines) == {"llama.cpp", "sentence", "torch", "faiss"}, proc.stdout
    llama = json.loads(lines["llama.cpp"].split(": ", 1)[1])
    assert llama["prompt_tokens"] >= setup_check.PROMPT_TOKENS_MIN and llama["completion_tokens"] > 0
    if not os.environ.get("VISIT_LLAMA_CMAKE_ARGS"):  # the default build: AVX2 baseline, nothing newer
        features = dict(part.strip().split(" = ") for part in llama["compiled_features"].split("|") if " = " in part)
        assert features.get("AVX2") == "1" and features.get("FMA") == "1", features
        assert not any(name.startswith(("AVX512", "AMX", "AVX_VNNI")) and on == "1" for name, on in features.items())


@pytest.mark.parametrize("component", list(setup_check.CHECKS))
def test_a_crash_is_named_with_its_fix(component):
    proc = run_check(**{setup_check.CRASH_ENV: component})
    assert proc.returncode == 1
    assert f"FAILED {component}: crashed with SIGSEGV (signal 11)" in proc.stderr
    assert "CPU flags that matter here:" in proc.stderr and "fix:" in proc.stderr
    others = [name for name in setup_check.CHECKS if name != component]
    assert all(f"ok    {name}" in proc.stderr for name in others)  # the rest still ran, and passed


def shadow_venv(tmp_path: Path) -> Path:
    """A venv at a new path whose packages are this one's (symlinks): installed, not yet checked."""
    shadow = tmp_path / "venv"
    (shadow / "bin").mkdir(parents=True)
    (shadow / "bin" / "python").symlink_to(Path(sys.prefix) / "bin" / "python")
    (shadow / "lib").symlink_to(Path(sys.prefix) / "lib")
    (shadow / "pyvenv.cfg").write_text((Path(sys.prefix) / "pyvenv.cfg").read_text())
    (shadow / ".installed").touch()
    return shadow


def test_setup_fails_clearly_and_marks_nothing_complete_when_the_llm_runtime_crashes(tmp_path):
    shadow = shadow_venv(tmp_path)
    env = {**os.environ, "VISIT_ASSETS_VENV": str(shadow), setup_check.CRASH_ENV: "llama.cpp"}
    proc = subprocess.run(["bash", str(REPO / "scripts" / "env.sh")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 1
    assert "FAILED llama.cpp: crashed with SIGSEGV" in proc.stderr
    assert "fix:" in proc.stderr and f"set-up FAILED: {shadow} is not marked complete" in proc.stderr
    assert not (shadow / ".complete").exists()
    assert proc.stdout == ""  # no environment path printed: `make` stops here

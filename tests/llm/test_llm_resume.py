"""SIGKILL a process in the middle of a real llama_cpp batch; the re-run sends only the rest."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from visit_assets.lib.llm import LLMCache, LLMClient, LLMRequest, SamplingParams

pytestmark = pytest.mark.slow

N = 14

SCRIPT = textwrap.dedent(
    """
    import sys
    from visit_assets.lib.llm import LLMCache, LLMClient, LLMRequest, SamplingParams
    from visit_assets.lib.llm.llama_cpp_backend import LlamaCppBackend
    sys.path.insert(0, sys.argv[2])
    from test_llm_resume import requests
    client = LLMClient(LlamaCppBackend(n_threads=1, n_parallel=2), LLMCache(sys.argv[1]))  # rows finish two at a time
    client.generate(requests())
    print("finished the whole batch", flush=True)
    """
)


def requests() -> list[LLMRequest]:
    return [LLMRequest.chat(f"Describe photo number {i} of a harbour in a few words.", params=SamplingParams(max_tokens=16))
            for i in range(N)]


def rows(path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM llm_responses").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_resume_after_sigkill(tmp_path, subprocess_env, llama_backend):
    path = tmp_path / "cache.sqlite"
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(path), os.path.dirname(__file__)],
                            env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while rows(path) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no results were cached"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = LLMCache(path).count()
    assert 3 <= done < N, done  # killed in the middle, finished rows kept

    client = LLMClient(llama_backend, LLMCache(path))
    results = client.generate(requests())
    assert client.last_stats.cache_hits == done
    assert client.last_stats.sent == N - done  # only the unfinished ones
    assert sum(r.cached for r in results) == done and len(results) == N
    assert LLMCache(path).count() == N

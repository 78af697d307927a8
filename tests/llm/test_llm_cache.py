"""Persistent cache + client: hits, misses on every key change, dedup, zero-send re-runs,
several processes writing one file at once."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import textwrap
import time

from visit_assets.lib.llm import LLMCache, LLMClient, LLMRequest, SamplingParams
from visit_assets.lib.llm.echo_backend import EchoBackend

SCHEMA = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}


def reqs(n: int, prefix: str = "q") -> list[LLMRequest]:
    return [LLMRequest.chat(f"{prefix} {i}", system="describe the image", tag=i) for i in range(n)]


def test_hit_after_miss(tmp_path):
    backend = EchoBackend()
    client = LLMClient(backend, LLMCache(tmp_path / "c.sqlite"))
    first = client.generate(reqs(5))
    assert client.last_stats.sent == 5 and client.last_stats.cache_hits == 0
    assert not any(r.cached for r in first)
    second = client.generate(reqs(5))
    assert client.last_stats.sent == 0 and client.last_stats.cache_hits == 5
    assert backend.calls == 5  # the re-run sent nothing
    assert all(r.cached for r in second)
    assert [r.text for r in first] == [r.text for r in second]
    assert [r.tag for r in second] == list(range(5))
    assert [r.cache_key for r in first] == [r.cache_key for r in second]
    # a fresh process-level handle on the same file sees the same entries
    fresh = LLMClient(EchoBackend(), LLMCache(tmp_path / "c.sqlite"))
    fresh.generate(reqs(5))
    assert fresh.last_stats.sent == 0 and fresh.backend.calls == 0


def test_miss_on_any_key_change(tmp_path):
    path = tmp_path / "c.sqlite"
    r0 = LLMRequest.chat("what is shown?", system="sys")
    LLMClient(EchoBackend(), LLMCache(path)).generate([r0])
    changed = {
        "messages": LLMRequest.chat("what is shown??", system="sys"),
        "system": LLMRequest.chat("what is shown?", system="sys2"),
        "schema": dataclasses.replace(r0, json_schema=SCHEMA),
        "regex": dataclasses.replace(r0, regex=".*"),
    }
    for field, value in [("temperature", 0.7), ("top_p", 0.5), ("max_tokens", 9), ("seed", 42), ("stop", ("x",))]:
        changed[field] = dataclasses.replace(r0, params=dataclasses.replace(r0.params, **{field: value}))
    for name, req in changed.items():
        client = LLMClient(EchoBackend(), LLMCache(path))
        client.generate([req])
        assert client.last_stats.sent == 1, name
    # different weights, same name: a miss too
    client = LLMClient(EchoBackend(weights="echo-v2"), LLMCache(path))
    client.generate([r0])
    assert client.last_stats.sent == 1
    # and the unchanged request still hits
    client = LLMClient(EchoBackend(), LLMCache(path))
    client.generate([dataclasses.replace(r0, tag="other tag")])
    assert client.last_stats.cache_hits == 1 and client.last_stats.sent == 0


def test_identical_requests_in_one_batch_are_sent_once(tmp_path):
    backend = EchoBackend()
    client = LLMClient(backend, LLMCache(tmp_path / "c.sqlite"))
    batch = reqs(3) + reqs(3) + reqs(1)
    results = client.generate(batch)
    assert backend.calls == 3
    s = client.last_stats
    assert (s.requests, s.sent, s.deduplicated, s.cache_hits) == (7, 3, 4, 0)
    texts = [r.text for r in results]
    assert texts[:3] == texts[3:6] and texts[6] == texts[0] and len(set(texts)) == 3
    assert [r.tag for r in results] == [0, 1, 2, 0, 1, 2, 0]


def test_results_are_cached_as_they_finish(tmp_path):
    path = tmp_path / "c.sqlite"
    seen = []

    class Watching(EchoBackend):
        def complete(self, requests, on_result):
            def spy(i, res):
                on_result(i, res)
                with sqlite3.connect(path) as con:  # another connection sees it committed at once
                    seen.append(con.execute("SELECT COUNT(*) FROM llm_responses").fetchone()[0])

            super().complete(requests, spy)

    LLMClient(Watching(), LLMCache(path)).generate(reqs(4))
    assert seen == [1, 2, 3, 4]


def test_truncated_rows_are_cached_but_not_errors(tmp_path):
    client = LLMClient(EchoBackend(), LLMCache(tmp_path / "c.sqlite"))
    short = LLMRequest.chat("one two three four five", params=SamplingParams(max_tokens=2))
    res = client.generate([short])[0]
    assert res.status == "truncated" and res.completion_tokens == 2
    again = client.generate([short])[0]
    assert again.cached and again.status == "truncated"
    assert client.last_stats.failures["truncated"] == 1


def test_progress_every_tenth(tmp_path):
    calls = []
    client = LLMClient(EchoBackend(), LLMCache(tmp_path / "c.sqlite"))
    client.generate(reqs(30)[:10])  # 10 of 30 cached
    client.generate(reqs(30), progress=lambda done, total: calls.append((done, total)))
    dones = [d for d, _ in calls]
    assert calls[0] == (10, 30) and calls[-1] == (30, 30)
    assert all(b - a <= 3 for a, b in zip(dones, dones[1:], strict=False))  # at least every 10% (= 3 rows)
    assert dones == sorted(dones)


def test_fully_cached_rerun_of_10k_is_fast(tmp_path):
    path = tmp_path / "c.sqlite"
    batch = reqs(10_000)
    backend = EchoBackend()
    LLMClient(backend, LLMCache(path)).generate(batch)
    client = LLMClient(backend, LLMCache(path))
    t0 = time.perf_counter()
    results = client.generate(batch)
    elapsed = time.perf_counter() - t0
    assert client.last_stats.sent == 0 and backend.calls == 10_000
    assert all(r.cached for r in results)
    assert elapsed < 2.0, elapsed


WRITER = textwrap.dedent(
    """
    import json, sys
    from visit_assets.lib.llm import LLMCache, LLMClient, LLMRequest
    from visit_assets.lib.llm.echo_backend import EchoBackend
    path, who, n_own, n_shared = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    batch = [LLMRequest.chat(f"{who} {i}") for i in range(n_own)] + [LLMRequest.chat(f"shared {i}") for i in range(n_shared)]
    client = LLMClient(EchoBackend(), LLMCache(path))
    results = client.generate(batch)
    print(json.dumps({"ok": sum(r.ok for r in results), "sent": client.last_stats.sent}))
    """
)


def test_concurrent_writers(tmp_path, subprocess_env):
    path = tmp_path / "shared.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    n_proc, n_own, n_shared = 4, 1500, 300
    procs = [
        subprocess.Popen([sys.executable, str(script), str(path), f"p{k}", str(n_own), str(n_shared)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env)
        for k in range(n_proc)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    assert all(o["ok"] == n_own + n_shared for o in outs)
    cache = LLMCache(path)
    assert cache.count() == n_proc * n_own + n_shared
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rerun = LLMClient(EchoBackend(), cache)
    rerun.generate([LLMRequest.chat(f"p{k} {i}") for k in range(n_proc) for i in range(n_own)])
    assert rerun.last_stats.sent == 0

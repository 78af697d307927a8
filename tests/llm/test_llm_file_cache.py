"""FileCache: the cache for a store shared by several hosts (one file per answer, atomic renames)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from visit_assets.lib.llm import FileCache, LLMCache, LLMClient, LLMRequest, open_cache
from visit_assets.lib.llm.echo_backend import EchoBackend


def reqs(n: int, prefix: str = "q") -> list[LLMRequest]:
    return [LLMRequest.chat(f"{prefix} {i}", system="describe the image", tag=i) for i in range(n)]


def test_a_second_client_on_the_folder_sends_nothing_and_gets_the_same_answers(tmp_path):
    first = LLMClient(EchoBackend(), FileCache(tmp_path / "cache"))
    answers = first.generate(reqs(6))
    again = LLMClient(EchoBackend(), FileCache(tmp_path / "cache"))  # another host, same shared folder
    cached = again.generate(reqs(6))
    assert again.last_stats.sent == 0 and again.backend.calls == 0
    assert [r.text for r in cached] == [r.text for r in answers] and all(r.cached for r in cached)
    assert FileCache(tmp_path / "cache").count() == 6
    assert FileCache(tmp_path / "cache").keys() == {r.cache_key for r in answers}
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_open_cache_picks_the_kind_from_the_location(tmp_path):
    assert isinstance(open_cache(f"{tmp_path}/shared/"), FileCache)
    (tmp_path / "existing").mkdir()
    assert isinstance(open_cache(tmp_path / "existing"), FileCache)
    assert isinstance(open_cache(tmp_path / "c.sqlite"), LLMCache)


def test_keys_never_become_paths(tmp_path):
    with pytest.raises(ValueError):
        FileCache(tmp_path).get("../../etc/passwd")


def test_four_processes_writing_overlapping_answers_leave_every_answer_whole(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from visit_assets.lib.llm import FileCache, LLMClient, LLMRequest
        from visit_assets.lib.llm.echo_backend import EchoBackend
        me = int(sys.argv[1])
        reqs = [LLMRequest.chat(f"q {{i}}", system="s") for i in range(me * 20, me * 20 + 60)]
        LLMClient(EchoBackend(), FileCache({str(tmp_path / "cache")!r})).generate(reqs)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(i)], stderr=subprocess.PIPE) for i in range(4)]
    errors = [p.communicate()[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    files = list((tmp_path / "cache").glob("*/*.json"))
    assert len(files) == 3 * 20 + 60  # keys 0..119, each once
    assert all(json.loads(f.read_text())["status"] == "ok" for f in files)
    assert not list((tmp_path / "cache").rglob("*.tmp"))

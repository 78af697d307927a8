"""The Dagster resource: configuration from env vars, client reuse, metadata without secrets."""

# no `from __future__ import annotations`: Dagster reads the asset's annotations at definition time

from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest

from visit_assets.defs.llm import LLMResource, default_cache_path, run_llm_batch
from visit_assets.lib.llm import LLMRequest, LLMUnavailableError, SamplingParams

ENV = ("VISIT_LLM_BACKEND", "VISIT_LLM_MODEL_PATH", "VISIT_LLM_BASE_URLS", "VISIT_LLM_SERVED_MODEL", "VISIT_LLM_API_KEY_ENV",
       "VISIT_LLM_CACHE", "VISIT_LLM_CONCURRENCY", "VISIT_LLM_TIMEOUT_S", "VISIT_LLM_MAX_RETRIES", "VISIT_LLM_THREADS",
       "VISIT_STORE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VISIT_HOME", str(tmp_path / "home"))


def test_defaults(tmp_path, monkeypatch):
    r = LLMResource()
    assert r.backend_kind() == "llama_cpp"
    assert Path(r.resolved_cache_path()) == tmp_path / "home" / "store" / "llm_cache.sqlite"
    monkeypatch.setenv("VISIT_STORE", str(tmp_path / "s"))
    assert Path(default_cache_path()) == tmp_path / "s" / "llm_cache.sqlite"
    monkeypatch.setenv("VISIT_LLM_CACHE", str(tmp_path / "x.sqlite"))
    assert Path(LLMResource().resolved_cache_path()) == tmp_path / "x.sqlite"
    assert LLMResource(use_cache=False).resolved_cache_path() is None


def test_openai_settings_from_env(monkeypatch):
    monkeypatch.setenv("VISIT_LLM_BACKEND", "openai")
    monkeypatch.setenv("VISIT_LLM_BASE_URLS", "http://10.0.0.1:8000, http://10.0.0.2:8000/v1")
    monkeypatch.setenv("VISIT_LLM_SERVED_MODEL", "Qwen/Qwen2.5-7B-Instruct")
    monkeypatch.setenv("VISIT_LLM_API_KEY_ENV", "FLEET_KEY")
    monkeypatch.setenv("VISIT_LLM_CONCURRENCY", "64")
    monkeypatch.setenv("FLEET_KEY", "sk-very-secret")
    r = LLMResource()
    s = r.backend_settings()
    assert s["base_urls"] == ["http://10.0.0.1:8000", "http://10.0.0.2:8000/v1"]
    assert s["api_key_env"] == "FLEET_KEY" and s["concurrency"] == 64 and s["max_retries"] == 5
    assert "sk-very-secret" not in repr(s)
    client = r.get_client()
    assert client.backend.base_urls == ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"]
    assert client.identity.weights == "endpoint:Qwen/Qwen2.5-7B-Instruct"
    assert r.get_client() is client  # built once per process and configuration


def test_llama_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VISIT_LLM_MODEL_PATH", str(tmp_path / "m.gguf"))
    monkeypatch.setenv("VISIT_LLM_THREADS", "3")
    s = LLMResource(n_parallel=4).backend_settings()
    assert s == {"model_path": str(tmp_path / "m.gguf"), "n_ctx": 2048, "n_threads": 3, "n_parallel": 4, "seed": 0}
    assert LLMResource().backend_settings()["n_parallel"] == 1
    assert LLMResource(n_threads=1).backend_settings()["n_threads"] == 1


def test_bad_backend():
    with pytest.raises(ValueError, match="unknown LLM backend"):
        LLMResource(backend="gpt").backend_kind()
    with pytest.raises(ValueError, match="base_urls"):
        LLMResource(backend="openai").backend_settings()


def test_run_batch_in_an_asset(tmp_path, monkeypatch):
    monkeypatch.setenv("SOME_KEY", "sk-never-in-metadata")
    cache = tmp_path / "cache.sqlite"

    @dg.asset
    def captions(context: dg.AssetExecutionContext, llm: LLMResource) -> dg.MaterializeResult:
        reqs = [LLMRequest.chat(f"image {i}", params=SamplingParams(max_tokens=3 if i % 5 else 1)) for i in range(25)]
        results, meta = llm.run_batch(context, reqs, label="captions")
        assert len(results) == 25
        return dg.MaterializeResult(metadata=meta)

    llm = LLMResource(backend="echo", cache_path=str(cache), api_key_env="SOME_KEY")
    out = dg.materialize([captions], resources={"llm": llm})
    assert out.success
    meta = out.asset_materializations_for_node("captions")[0].metadata
    values = {k: v.value for k, v in meta.items()}
    assert values["llm_requests"] == 25 and values["llm_sent"] == 25 and values["llm_cache_hits"] == 0
    assert values["llm_failures_truncated"] == 5 and values["llm_tokens_out"] > 0
    assert values["llm_model"] == "echo" and values["llm_model_weights"] == "no-model" and values["llm_backend"] == "echo"
    assert "llm_tokens_per_s" in values
    assert not any("sk-never" in str(v) for v in values.values())

    again = dg.materialize([captions], resources={"llm": llm})
    values = {k: v.value for k, v in again.asset_materializations_for_node("captions")[0].metadata.items()}
    assert values["llm_cache_hits"] == 25 and values["llm_sent"] == 0


class RecordingLog:
    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(("info", msg))

    def error(self, msg):
        self.lines.append(("error", msg))


def test_progress_goes_to_context_log(tmp_path):
    context = SimpleNamespace(log=RecordingLog())
    client = LLMResource(backend="echo", cache_path=str(tmp_path / "c.sqlite")).get_client()
    results, meta = run_llm_batch(context, client, [LLMRequest.chat(f"q {i}") for i in range(40)], label="qa")
    progress = [m for _, m in context.log.lines if "/40 (" in m]
    assert len(progress) >= 10 and progress[-1].startswith("[qa] 40/40")
    assert meta["llm_requests"] == 40 and len(results) == 40


def test_outage_is_logged_and_raised(tmp_path):
    context = SimpleNamespace(log=RecordingLog())
    client = LLMResource(backend="openai", base_urls="http://127.0.0.1:9", served_model="m", max_retries=0,
                         cache_path=str(tmp_path / "c.sqlite")).get_client()
    with pytest.raises(LLMUnavailableError):
        run_llm_batch(context, client, [LLMRequest.chat("q")])
    assert any(level == "error" and "re-run to resume" in m for level, m in context.log.lines)

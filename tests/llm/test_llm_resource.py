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


ROLE_ENV = [f"VISIT_{r}_LLM_{f}" for r in ("CHECKER", "JUDGE", "PAIRWISE")
            for f in ("BACKEND", "MODEL_PATH", "MODEL_NAME", "MODEL_WEIGHTS", "BASE_URLS", "SERVED_MODEL", "API_KEY_ENV")]


@pytest.fixture
def no_role_env(monkeypatch):
    for var in ROLE_ENV:
        monkeypatch.delenv(var, raising=False)


def test_every_role_is_the_generator_unless_configured(no_role_env, tmp_path):
    llm = LLMResource(backend="echo", cache_path=str(tmp_path / "c.sqlite"))
    for role in ("generator", "checker", "judge", "pairwise", "teacher"):
        assert llm.role(role).get_client() is llm.get_client()  # one model loaded, not five
    with pytest.raises(ValueError, match="unknown LLM role"):
        llm.role("critic")


def test_a_role_takes_its_own_model_from_config_or_env(no_role_env, monkeypatch, tmp_path):
    from visit_assets.defs.llm.resources import LLMRoleConfig

    monkeypatch.setenv("VISIT_LLM_BACKEND", "openai")
    monkeypatch.setenv("VISIT_LLM_BASE_URLS", "http://10.0.0.1:8000/v1")
    monkeypatch.setenv("VISIT_LLM_SERVED_MODEL", "small-7b")
    monkeypatch.setenv("VISIT_JUDGE_LLM_SERVED_MODEL", "big-70b")
    llm = LLMResource(model_name="small", model_weights="w" * 12, cache_path=str(tmp_path / "c.sqlite"),
                      pairwise=LLMRoleConfig(base_urls="http://10.0.0.9:8000/v1", served_model="judge-72b"))
    generator, judge, pairwise = (llm.role(r).get_client() for r in ("generator", "judge", "pairwise"))
    assert generator.identity.name == "small" and llm.role("checker").get_client() is generator
    # another model: the generator's identity override is not inherited, the endpoint is
    assert judge.identity.name == "big-70b" and judge.identity.weights == "endpoint:big-70b"
    assert judge.backend.base_urls == ["http://10.0.0.1:8000/v1"]
    assert pairwise.identity.name == "judge-72b" and pairwise.backend.base_urls == ["http://10.0.0.9:8000/v1"]


def test_a_role_setting_endpoint_fields_on_a_local_backend_is_an_error(no_role_env, monkeypatch):
    monkeypatch.setenv("VISIT_CHECKER_LLM_SERVED_MODEL", "big-70b")
    with pytest.raises(ValueError,
                       match=r"\['served_model'\], which the 'echo' backend does not read; set VISIT_CHECKER_LLM_BACKEND"):
        LLMResource(backend="echo").role("checker")
    monkeypatch.setenv("VISIT_CHECKER_LLM_BACKEND", "openai")
    monkeypatch.setenv("VISIT_CHECKER_LLM_BASE_URLS", "http://10.0.0.9:8000/v1")
    monkeypatch.setenv("VISIT_CHECKER_LLM_MODEL_PATH", "/models/x.gguf")
    with pytest.raises(ValueError, match=r"\['model_path'\], which the 'openai' backend does not read"):
        LLMResource(backend="echo").role("checker")


def test_the_generators_api_key_never_goes_to_another_endpoint(no_role_env, monkeypatch, tmp_path):
    monkeypatch.setenv("VISIT_LLM_BACKEND", "openai")
    monkeypatch.setenv("VISIT_LLM_BASE_URLS", "https://api.example.com/v1")
    monkeypatch.setenv("VISIT_LLM_SERVED_MODEL", "hosted-8b")
    monkeypatch.setenv("VISIT_LLM_API_KEY_ENV", "HOSTED_KEY")
    llm = LLMResource(cache_path=str(tmp_path / "c.sqlite"))
    monkeypatch.setenv("VISIT_JUDGE_LLM_SERVED_MODEL", "hosted-70b")  # same endpoint: same key
    assert llm.role("judge").get_client().backend.api_key_env == "HOSTED_KEY"
    monkeypatch.setenv("VISIT_JUDGE_LLM_BASE_URLS", "http://10.0.0.9:8000/v1")  # another endpoint: say which key
    with pytest.raises(ValueError, match="VISIT_JUDGE_LLM_API_KEY_ENV"):
        llm.role("judge")
    monkeypatch.setenv("VISIT_JUDGE_LLM_API_KEY_ENV", "none")
    assert llm.role("judge").get_client().backend.api_key_env is None


def test_identity_is_kept_for_the_same_model_and_pairwise_follows_the_judge(no_role_env, monkeypatch, tmp_path):
    monkeypatch.setenv("VISIT_LLM_BACKEND", "openai")
    monkeypatch.setenv("VISIT_LLM_BASE_URLS", "http://10.0.0.1:8000/v1")
    monkeypatch.setenv("VISIT_LLM_SERVED_MODEL", "small-7b")
    llm = LLMResource(model_name="small", model_weights="w" * 12, cache_path=str(tmp_path / "c.sqlite"))
    monkeypatch.setenv("VISIT_CHECKER_LLM_SERVED_MODEL", "small-7b")  # the same model, said again
    assert llm.role("checker").get_client().identity == llm.get_client().identity  # its answers stay cached
    monkeypatch.setenv("VISIT_JUDGE_LLM_SERVED_MODEL", "big-70b")
    assert llm.role("pairwise").get_client().identity.name == "big-70b"  # unset: the judge's model
    assert llm.role("teacher").get_client().identity.name == "big-70b"  # the stronger model, as the paper's stage 1


def test_role_batches_count_requests_as_llm_and_name_the_role_model(no_role_env, monkeypatch, tmp_path):
    monkeypatch.setenv("VISIT_JUDGE_LLM_BACKEND", "echo")  # another backend than the generator's (never loaded here)
    llm = LLMResource(backend="llama_cpp", cache_path=str(tmp_path / "c.sqlite"))
    context = SimpleNamespace(log=RecordingLog())
    _, meta = llm.role("judge").run_batch(context, [LLMRequest.chat(f"q {i}") for i in range(3)], label="judge")
    assert meta["llm_sent"] == 3 and meta["judge_llm_model"] == "echo" and "llm_model" not in meta
    assert any("[judge (judge)] 3/3" in m for _, m in context.log.lines)


def test_a_run_file_may_set_the_role_variables():
    from visit_assets.run_command import known_env_names

    assert {"VISIT_CHECKER_LLM_SERVED_MODEL", "VISIT_JUDGE_LLM_BASE_URLS", "VISIT_PAIRWISE_LLM_BACKEND"} <= known_env_names()

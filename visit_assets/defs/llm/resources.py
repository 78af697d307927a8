"""`LLMResource`: configuration of the model layer for Dagster assets, and batch runs with metadata.

Every setting left unset falls back to an environment variable read when the client is built
(so executors pick up their own environment), then to a laptop default:

    backend        VISIT_LLM_BACKEND        llama_cpp | openai | vllm | echo (default llama_cpp)
    model_path     VISIT_LLM_MODEL_PATH     GGUF path (llama_cpp) or model id/path (vllm); default: SmolLM2-135M GGUF
    n_threads      VISIT_LLM_THREADS        llama.cpp threads (default: half the CPUs)
    base_urls      VISIT_LLM_BASE_URLS      comma-separated OpenAI-compatible base URLs (openai)
    served_model   VISIT_LLM_SERVED_MODEL   model name the servers expect (openai)
    api_key_env    VISIT_LLM_API_KEY_ENV    NAME of the env var holding the API key (the key itself is never config)
    concurrency    VISIT_LLM_CONCURRENCY    in-flight requests over all endpoints (default 8)
    timeout_s      VISIT_LLM_TIMEOUT_S      per-request read timeout (default 120)
    max_retries    VISIT_LLM_MAX_RETRIES    retries on 429/5xx/connection errors (default 5)
    cache_path     VISIT_LLM_CACHE          default <VISIT_STORE or ./visit_data/store>/llm_cache.sqlite

A budget per Dagster run (lib/llm/budget.py), over every step and role of the run; unset, no cap:

    max_requests_per_run       VISIT_LLM_MAX_REQUESTS_PER_RUN       requests sent (cache hits are free)
    max_output_tokens_per_run  VISIT_LLM_MAX_OUTPUT_TOKENS_PER_RUN  output tokens (passed by at most a chunk)
    price_per_m_input_tokens   VISIT_LLM_PRICE_PER_M_INPUT_TOKENS   for the estimated cost in logs and metadata
    price_per_m_output_tokens  VISIT_LLM_PRICE_PER_M_OUTPUT_TOKENS

A step that meets the cap stops cleanly: what it sent is answered and cached, it fails saying how
far it got, and the next run continues from the cache. The run's spend is kept in the cache's store
(with use_cache off, in each step's process only).

One model per role (the papers judge with a stronger model than the one that generates). The
generator is the settings above; `checker` (Instructify's verifier, MM-Instruct's fit check),
`judge` (InstructionGPT-4's quality score), `pairwise` (the pairwise evaluation) and `teacher`
(MM-Instruct's stage-1 answers, the in-context examples of stage 2) and `describer` (a
vision-language model describing images whose metadata is thin; unset, none is: a text model cannot
see) each take the model fields of `LLMRoleConfig`, from the resource's field of that name, else from
VISIT_<ROLE>_LLM_<FIELD> (e.g. VISIT_JUDGE_LLM_SERVED_MODEL), else the generator's. Endpoint pool
limits and the answer cache are shared; cache keys name the model, so roles never share answers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import dagster as dg

from ... import settings
from ...lib.ids import stable_json
from ...lib.llm import LLMClient, LLMRequest, LLMResult, LLMStats, LLMUnavailableError, make_backend
from ...lib.llm.backends import BACKENDS
from ...lib.llm.budget import Budget, BudgetExhausted
from ...lib.llm.cache import open_cache
from ...lib.llm.openai_backend import SchemaStyle

_clients: dict[tuple[int, str], LLMClient] = {}
_clients_lock = threading.Lock()

GENERATOR = "generator"
ROLES = (GENERATOR, "checker", "judge", "pairwise", "teacher", "describer")
# The fields a role may set, with the suffix of their VISIT_<ROLE>_LLM_* variables.
ROLE_FIELDS = {"backend": "BACKEND", "model_path": "MODEL_PATH", "model_name": "MODEL_NAME",
               "model_weights": "MODEL_WEIGHTS", "base_urls": "BASE_URLS", "served_model": "SERVED_MODEL",
               "api_key_env": "API_KEY_ENV"}
# unset, the pairwise judge and the teacher (MM-Instruct's stage-1 examples) are the quality judge's model:
# the papers' stronger model
ROLE_FALLBACK = {"pairwise": "judge", "teacher": "judge"}
NO_KEY = "none"  # a role's api_key_env: its endpoints take no key
# The role fields each backend reads; a role setting another is refused (it would be ignored).
BACKEND_READS = {"openai": {"base_urls", "served_model", "api_key_env", "model_name", "model_weights"},
                 "vllm": {"model_path", "model_name", "model_weights"}, "llama_cpp": {"model_path"}, "echo": set()}


def role_env_name(role: str, field: str) -> str:
    return f"VISIT_{role.upper()}_LLM_{ROLE_FIELDS[field]}"


def role_env_names() -> set[str]:
    """Every VISIT_<ROLE>_LLM_* variable (the other roles' models)."""
    return {role_env_name(r, f) for r in ROLES if r != GENERATOR for f in ROLE_FIELDS}


def default_cache_path() -> str:
    """$VISIT_LLM_CACHE as written (a trailing slash picks the one-file-per-answer FileCache)."""
    return settings.env("VISIT_LLM_CACHE") or str(settings.store_root() / "llm_cache.sqlite")


class LLMRoleConfig(dg.Config):
    """The model of one role; unset fields are the generator's (identity overrides only when the
    role names the same model)."""

    backend: str | None = None
    model_path: str | None = None
    model_name: str | None = None
    model_weights: str | None = None
    base_urls: str | None = None
    served_model: str | None = None
    api_key_env: str | None = None


class LLMResource(dg.ConfigurableResource):
    """Which model answers LLM requests in each role, and where its answers are cached."""

    backend: str | None = None
    model_path: str | None = None
    # identity overrides: a name + weights hash shared across backends lets them share cache entries
    model_name: str | None = None
    model_weights: str | None = None
    # llama_cpp
    n_ctx: int = 2048
    n_threads: int | None = None  # default $VISIT_LLM_THREADS, else half the CPUs
    n_parallel: int = 1  # >1: sequences decoded together (faster with several threads; not batch-invariant)
    seed: int = 0
    # openai
    base_urls: str | None = None
    served_model: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout_s: float | None = None
    max_retries: int | None = None
    # "json_object" for llama-cpp-python's server, "structured_outputs" for vLLM extras
    schema_style: SchemaStyle = "json_schema"
    # vllm
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    # cache
    cache_path: str | None = None
    use_cache: bool = True
    # budget per run (None: $VISIT_LLM_*, else no cap)
    max_requests_per_run: int | None = None
    max_output_tokens_per_run: int | None = None
    price_per_m_input_tokens: float | None = None
    price_per_m_output_tokens: float | None = None
    # the other roles' models (default: the generator)
    checker: LLMRoleConfig | None = None
    judge: LLMRoleConfig | None = None
    pairwise: LLMRoleConfig | None = None
    teacher: LLMRoleConfig | None = None
    describer: LLMRoleConfig | None = None  # a vision-language model; unset, no image is described

    def role_overrides(self, role: str) -> dict[str, str]:
        """The model fields `role` sets itself (its config field, else VISIT_<ROLE>_LLM_*), over
        those of the role it falls back to (pairwise: the judge's)."""
        if role not in ROLES:
            raise ValueError(f"unknown LLM role {role!r}; choose one of {ROLES}")
        if role == GENERATOR:
            return {}
        values = self.role_overrides(ROLE_FALLBACK[role]) if role in ROLE_FALLBACK else {}
        config = getattr(self, role)
        for field in ROLE_FIELDS:
            value = (getattr(config, field) if config else None) or settings.env(role_env_name(role, field))
            if value:
                values[field] = value
        return values

    def role(self, role: str) -> RoleLLM:
        """The model of `role`: this resource's client when the role sets nothing of its own."""
        overrides = self.role_overrides(role)
        if not overrides:
            return RoleLLM(role, self.get_client, self.budget())
        generator = {k: getattr(self, k) for k in type(self).model_fields if k not in ROLES}
        kind, settings = _role_settings(role, overrides, type(self)(**{**generator, **overrides}), self)
        cache_path = self.resolved_cache_path()
        return RoleLLM(role, lambda: _client(kind, settings, cache_path), self.budget())
    def backend_kind(self) -> str:
        kind = self.backend or settings.env("VISIT_LLM_BACKEND") or "llama_cpp"
        if kind not in BACKENDS:
            raise ValueError(f"unknown LLM backend {kind!r}; choose one of {BACKENDS}")
        return kind

    def backend_settings(self) -> dict[str, Any]:
        """Keyword arguments for the chosen backend (names of env vars only, never secrets)."""
        kind = self.backend_kind()
        model_path = self.model_path or settings.env("VISIT_LLM_MODEL_PATH")
        if kind == "llama_cpp":
            threads = self.n_threads or (int(env_threads) if (env_threads := settings.env("VISIT_LLM_THREADS"))
                                         else None)
            return {"model_path": model_path, "n_ctx": self.n_ctx, "n_threads": threads, "n_parallel": self.n_parallel,
                    "seed": self.seed}
        if kind == "openai":
            urls = self.base_urls or settings.env("VISIT_LLM_BASE_URLS")
            served = self.served_model or settings.env("VISIT_LLM_SERVED_MODEL")
            if not urls or not served:
                raise ValueError("the openai backend needs base_urls/VISIT_LLM_BASE_URLS and "
                                 "served_model/VISIT_LLM_SERVED_MODEL")
            return {
                "base_urls": [u.strip() for u in urls.split(",") if u.strip()],
                "served_model": served,
                "model_name": self.model_name,
                "weights": self.model_weights,
                "api_key_env": self.api_key_env or settings.env("VISIT_LLM_API_KEY_ENV"),
                "concurrency": self.concurrency or int(settings.env("VISIT_LLM_CONCURRENCY") or 8),
                "timeout_s": self.timeout_s or float(settings.env("VISIT_LLM_TIMEOUT_S") or 120),
                "max_retries": (self.max_retries if self.max_retries is not None
                                else int(settings.env("VISIT_LLM_MAX_RETRIES") or 5)),
                "schema_style": self.schema_style,
            }
        if kind == "vllm":
            if not model_path:
                raise ValueError("the vllm backend needs model_path/VISIT_LLM_MODEL_PATH (a model id or path)")
            return {
                "model": model_path,
                "model_name": self.model_name,
                "weights": self.model_weights,
                "tensor_parallel_size": self.tensor_parallel_size,
                "max_model_len": self.max_model_len,
                "gpu_memory_utilization": self.gpu_memory_utilization,
                "seed": self.seed,
            }
        return {}

    def resolved_cache_path(self) -> str | None:
        if not self.use_cache:
            return None
        return self.cache_path or default_cache_path()

    def budget(self) -> Budget:
        """This run's caps and prices: the fields, else VISIT_LLM_*, else none."""

        def pick(value: Any, env: str, cast: Callable[[str], Any]) -> Any:
            return value if value is not None else (cast(text) if (text := settings.env(env)) else None)

        return Budget(max_requests=pick(self.max_requests_per_run, "VISIT_LLM_MAX_REQUESTS_PER_RUN", int),
                      max_output_tokens=pick(self.max_output_tokens_per_run, "VISIT_LLM_MAX_OUTPUT_TOKENS_PER_RUN", int),
                      price_per_m_input=pick(self.price_per_m_input_tokens, "VISIT_LLM_PRICE_PER_M_INPUT_TOKENS",
                                             float) or 0.0,
                      price_per_m_output=pick(self.price_per_m_output_tokens, "VISIT_LLM_PRICE_PER_M_OUTPUT_TOKENS",
                                              float) or 0.0)

    def get_client(self) -> LLMClient:
        """The client for this configuration, built once per process (the model loads once)."""
        return _client(self.backend_kind(), self.backend_settings(), self.resolved_cache_path())

    def run_batch(
        self, context: Any, requests: Iterable[LLMRequest], *, label: str = "llm"
    ) -> tuple[list[LLMResult], dict[str, Any]]:
        """Run a batch on the generator, logging progress to context.log; return (results, materialization metadata)."""
        return run_llm_batch(context, self.get_client(), requests, label=label, budget=self.budget())


def _client(kind: str, kwargs: dict[str, Any], cache_path: str | None) -> LLMClient:
    key = (os.getpid(), stable_json([kind, kwargs, str(cache_path)]))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            backend = make_backend(kind, **kwargs)
            client = _clients[key] = LLMClient(backend, open_cache(cache_path) if cache_path else None)
    return client


def _settings_or_none(resource: LLMResource) -> tuple[str, dict[str, Any]] | None:
    try:
        return resource.backend_kind(), resource.backend_settings()
    except ValueError:  # the generator itself is misconfigured: its own steps say so
        return None


def _role_settings(role: str, overrides: dict[str, str], merged: LLMResource,
                   generator: LLMResource) -> tuple[str, dict[str, Any]]:
    """(backend kind, settings) of a role's model: the generator's settings with the role's fields
    over them. Refuses fields the role's backend would ignore, and a generator's API key inherited
    by other endpoints; another model never inherits the generator's identity override."""
    kind = merged.backend_kind()
    ignored = set(overrides) - BACKEND_READS[kind] - {"backend"}
    if ignored:
        raise ValueError(f"the {role} model sets {sorted(ignored)}, which the {kind!r} backend does not read; "
                         f"set {role_env_name(role, 'backend')} (or its `backend` field) to the backend they belong to")
    settings = dict(merged.backend_settings())
    mine = _settings_or_none(generator)
    same_model = mine is not None and mine[0] == kind and all(
        settings.get(k) == mine[1].get(k) for k in ("model_path", "model", "base_urls", "served_model"))
    if not same_model:
        for field, key in (("model_name", "model_name"), ("model_weights", "weights")):
            if key in settings and field not in overrides:
                settings[key] = None
    if kind == "openai":
        if overrides.get("api_key_env", "").lower() == NO_KEY:
            settings["api_key_env"] = None
        elif ("api_key_env" not in overrides and settings.get("api_key_env")
              and (mine is None or mine[0] != "openai" or mine[1]["base_urls"] != settings["base_urls"])):
            raise ValueError(f"the {role} model's endpoints are not the generator's, so the generator's API key "
                             f"({settings['api_key_env']}) is not sent to them: set {role_env_name(role, 'api_key_env')} "
                             f"to the name of the variable holding their key, or to {NO_KEY!r}")
    return kind, settings

class RoleLLM:
    """One role's model: its client, and batches whose metadata names the role's model
    (`judge_llm_model`); request counts stay `llm_*`, so a step's `llm_sent` counts every role."""

    def __init__(self, role: str, client: Callable[[], LLMClient], budget: Budget | None = None):
        self.role, self._client, self.budget = role, client, budget
        self.model_prefix = "llm_" if role == GENERATOR else f"{role}_llm_"

    def get_client(self) -> LLMClient:
        return self._client()

    def run_batch(
        self, context: Any, requests: Iterable[LLMRequest], *, label: str = "llm"
    ) -> tuple[list[LLMResult], dict[str, Any]]:
        return run_llm_batch(context, self.get_client(), requests, label=f"{label} ({self.role})"
                             if self.role != GENERATOR else label, model_prefix=self.model_prefix, budget=self.budget)


def llm_metadata(client: LLMClient, stats: LLMStats, prefix: str = "llm_", model_prefix: str | None = None
                 ) -> dict[str, Any]:
    """A batch's own stats under `prefix` (not the client's `last_stats`: batches may run at once) +
    model identity (`model_prefix`, default `prefix`) as flat Dagster metadata (no secrets: no URLs, no keys)."""
    ident, model_prefix = client.identity, model_prefix or prefix
    meta: dict[str, Any] = {f"{prefix}{k}": v for k, v in stats.as_dict().items()}
    meta[f"{model_prefix}backend"] = client.backend.kind
    meta[f"{model_prefix}model"] = ident.name
    meta[f"{model_prefix}model_weights"] = ident.weights
    meta[f"{model_prefix}model_label"] = ident.label()
    return meta


def run_llm_batch(
    context: Any, client: LLMClient, requests: Iterable[LLMRequest], *, label: str = "llm", model_prefix: str = "llm_",
    budget: Budget | None = None,
) -> tuple[list[LLMResult], dict[str, Any]]:
    log = context.log
    reqs: Sequence[LLMRequest] = list(requests)
    log.info(f"[{label}] {len(reqs)} requests on {client.backend.kind} {client.identity.label()}")
    scope = _run_id(context)
    s = LLMStats()  # this batch's own figures: other batches of the step may run at once (sampling lanes)

    first: list[tuple[float, int]] = []  # the first report comes before anything is sent: done = cache hits

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if not first:
            first.append((now, done))
        t0, hits = first[0]
        pct = 100.0 * done / total if total else 100.0
        message = f"[{label}] {done}/{total} ({pct:.0f}%) done, {hits} from cache"
        if hits < done < total and now > t0:
            rate = (done - hits) / (now - t0)
            eta = (total - done) / rate
            message += (f", {rate:.2f} req/s, {s.tokens_out / (now - t0):.0f} tok/s, "
                        f"ETA {f'{eta / 60:.0f} min' if eta >= 120 else f'{eta:.0f} s'}")
        log.info(message)

    try:
        results = client.generate(reqs, progress=progress, budget=budget, scope=scope, stats=s)
    except LLMUnavailableError as exc:
        cached = s.completed - s.failures.get("error", 0)  # error results are retried, never cached
        log.error(f"[{label}] stopped: {exc}. {cached} answers of this batch are cached; re-run to resume.")
        raise
    except BudgetExhausted as exc:
        log.error(f"[{label}] stopped: {exc}")
        raise dg.Failure(description=str(exc), allow_retries=False, metadata={
            **llm_metadata(client, s, model_prefix=model_prefix), **budget_metadata(exc.budget, exc.spend),
            "llm_answered_of_batch": exc.answered, "llm_batch_requests": exc.total}) from exc
    meta = llm_metadata(client, s, model_prefix=model_prefix)
    if budget is not None and scope:
        meta.update(budget_metadata(budget, client.cache.spend(scope)))
    log.info(
        f"[{label}] done: {s.requests} requests, {s.cache_hits} cache hits, {s.sent} sent, "
        f"{s.tokens_out} tokens out at {s.tokens_per_s:.1f} tok/s, "
        f"failures {dict((k, v) for k, v in s.failures.items() if v)}"
    )
    return results, meta


def _run_id(context: Any) -> str:
    """The Dagster run the batch belongs to (its budget's ledger), or "" outside a run: then
    nothing is recorded, and a capped budget is refused by the client."""
    try:
        return context.run.run_id
    except Exception:  # a directly invoked asset's context raises on .run
        return ""


def budget_metadata(budget: Budget, spend: Any) -> dict[str, Any]:
    """What the run has spent so far against its caps (not summed over a step's rounds: see rounds.py)."""
    return {"llm_run_requests_sent": spend.requests, "llm_run_tokens_out": spend.tokens_out,
            "llm_run_max_requests": budget.max_requests if budget.max_requests is not None else "none",
            "llm_run_max_output_tokens": budget.max_output_tokens if budget.max_output_tokens is not None else "none",
            "llm_run_estimated_cost": budget.cost(spend)}

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
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Iterable, Sequence

import dagster as dg

from ... import settings
from ...lib.ids import stable_json
from ...lib.llm import LLMClient, LLMRequest, LLMResult, LLMUnavailableError, make_backend
from ...lib.llm.backends import BACKENDS
from ...lib.llm.cache import open_cache

_clients: dict[tuple[int, str], LLMClient] = {}
_clients_lock = threading.Lock()


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def default_cache_path() -> str:
    """$VISIT_LLM_CACHE as written (a trailing slash picks the one-file-per-answer FileCache)."""
    return _env("VISIT_LLM_CACHE") or str(settings.store_root() / "llm_cache.sqlite")


class LLMResource(dg.ConfigurableResource):
    """Which model answers LLM requests, and where its answers are cached."""

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
    schema_style: str = "json_schema"  # "json_object" for llama-cpp-python's server, "structured_outputs" for vLLM extras
    # vllm
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    # cache
    cache_path: str | None = None
    use_cache: bool = True

    def backend_kind(self) -> str:
        kind = self.backend or _env("VISIT_LLM_BACKEND") or "llama_cpp"
        if kind not in BACKENDS:
            raise ValueError(f"unknown LLM backend {kind!r}; choose one of {BACKENDS}")
        return kind

    def backend_settings(self) -> dict[str, Any]:
        """Keyword arguments for the chosen backend (names of env vars only, never secrets)."""
        kind = self.backend_kind()
        model_path = self.model_path or _env("VISIT_LLM_MODEL_PATH")
        if kind == "llama_cpp":
            threads = self.n_threads or (int(_env("VISIT_LLM_THREADS")) if _env("VISIT_LLM_THREADS") else None)
            return {"model_path": model_path, "n_ctx": self.n_ctx, "n_threads": threads, "n_parallel": self.n_parallel, "seed": self.seed}
        if kind == "openai":
            urls = self.base_urls or _env("VISIT_LLM_BASE_URLS")
            served = self.served_model or _env("VISIT_LLM_SERVED_MODEL")
            if not urls or not served:
                raise ValueError("the openai backend needs base_urls/VISIT_LLM_BASE_URLS and served_model/VISIT_LLM_SERVED_MODEL")
            return {
                "base_urls": [u.strip() for u in urls.split(",") if u.strip()],
                "served_model": served,
                "model_name": self.model_name,
                "weights": self.model_weights,
                "api_key_env": self.api_key_env or _env("VISIT_LLM_API_KEY_ENV"),
                "concurrency": self.concurrency or int(_env("VISIT_LLM_CONCURRENCY") or 8),
                "timeout_s": self.timeout_s or float(_env("VISIT_LLM_TIMEOUT_S") or 120),
                "max_retries": self.max_retries if self.max_retries is not None else int(_env("VISIT_LLM_MAX_RETRIES") or 5),
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

    def get_client(self) -> LLMClient:
        """The client for this configuration, built once per process (the model loads once)."""
        kind, kwargs, cache_path = self.backend_kind(), self.backend_settings(), self.resolved_cache_path()
        key = (os.getpid(), stable_json([kind, kwargs, str(cache_path)]))
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                backend = make_backend(kind, **kwargs)
                client = _clients[key] = LLMClient(backend, open_cache(cache_path) if cache_path else None)
        return client

    def run_batch(
        self, context: Any, requests: Iterable[LLMRequest], *, label: str = "llm"
    ) -> tuple[list[LLMResult], dict[str, Any]]:
        """Run a batch, logging progress to context.log; return (results, materialization metadata)."""
        return run_llm_batch(context, self.get_client(), requests, label=label)


def llm_metadata(client: LLMClient, prefix: str = "llm_") -> dict[str, Any]:
    """The last batch's stats + model identity as flat Dagster metadata (no secrets: no URLs, no keys)."""
    ident = client.identity
    meta: dict[str, Any] = {f"{prefix}{k}": v for k, v in client.last_stats.as_dict().items()}
    meta[f"{prefix}backend"] = client.backend.kind
    meta[f"{prefix}model"] = ident.name
    meta[f"{prefix}model_weights"] = ident.weights
    meta[f"{prefix}model_label"] = ident.label()
    return meta


def run_llm_batch(
    context: Any, client: LLMClient, requests: Iterable[LLMRequest], *, label: str = "llm"
) -> tuple[list[LLMResult], dict[str, Any]]:
    log = context.log
    reqs: Sequence[LLMRequest] = list(requests)
    log.info(f"[{label}] {len(reqs)} requests on {client.backend.kind} {client.identity.label()}")

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
            message += f", {rate:.2f} req/s, ETA {f'{eta / 60:.0f} min' if eta >= 120 else f'{eta:.0f} s'}"
        log.info(message)

    try:
        results = client.generate(reqs, progress=progress)
    except LLMUnavailableError as exc:
        s = client.last_stats
        cached = s.completed - s.failures.get("error", 0)  # error results are retried, never cached
        log.error(f"[{label}] stopped: {exc}. {cached} answers of this batch are cached; re-run to resume.")
        raise
    meta = llm_metadata(client)
    s = client.last_stats
    log.info(
        f"[{label}] done: {s.requests} requests, {s.cache_hits} cache hits, {s.sent} sent, "
        f"{s.tokens_out} tokens out at {s.tokens_per_s:.1f} tok/s, failures {dict((k, v) for k, v in s.failures.items() if v)}"
    )
    return results, meta

"""`openai` backend: any OpenAI-compatible chat server (a fleet of `vllm serve`, llama.cpp servers, ...).

Requests are spread over several base URLs with bounded concurrency (a thread pool over one
urllib3 connection pool: httpx took 2-5x its client CPU per request, bench/feed_rate.py). Not the
`openai` SDK: it is built on httpx (that cost again), a client talks to one base URL, and its
retries stay on it, where a retry here moves to the next healthy endpoint of the pool.
429/5xx/connection errors are retried with exponential backoff + jitter
(Retry-After honoured); a retry moves to the next healthy endpoint. A request that still fails
after the retries stops the batch: in-flight requests finish (and are reported, so the client
caches them), then `LLMUnavailableError` names the endpoint(s) and the last error.

The API key is read from the environment variable named by `api_key_env` at request time; it is
never stored on the backend, logged, or part of the identity.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from visit_assets.lib.llm.types import LLMRequest, LLMUnavailableError, error_result, finish_result
from visit_assets.lib.models.identity import STAND_IN, ModelIdentity
from visit_assets.lib.standin import is_stand_in

# How a JSON schema is asked for (LLMResource.schema_style)
SchemaStyle = Literal["json_schema", "json_object", "structured_outputs", "guided"]
SCHEMA_STYLES: tuple[str, ...] = get_args(SchemaStyle)
REGEX_STYLES = ("structured_outputs", "guided", "none")
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
FATAL_STATUS = frozenset({401, 403, 404})  # wrong key / URL / model: every request would fail the same way


def normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url:
        raise ValueError("empty base URL")
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # Base URLs are config (shown in the UI) and appear in errors: no secrets in them.
        raise ValueError(f"the base URL for host {parts.hostname!r} carries credentials; put the key in the "
                         "environment variable named by api_key_env instead")
    return url if url.endswith("/v1") else url + "/v1"


def openai_body(
    request: LLMRequest,
    served_model: str,
    *,
    schema_style: str = "json_schema",
    regex_style: str = "structured_outputs",
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of one /chat/completions call. A request's images go as OpenAI content parts
    (base64 data URIs) of its last user message, as vLLM and llama.cpp's server take them for a VLM."""
    p = request.params
    body: dict[str, Any] = {
        "model": served_model,
        "messages": request.openai_messages(),
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "n": 1,
    }
    if p.seed is not None:
        body["seed"] = p.seed
    if p.stop:
        body["stop"] = list(p.stop)
    if request.json_schema is not None:
        schema = dict(request.json_schema)
        if schema_style == "json_schema":  # OpenAI / vLLM
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
        elif schema_style == "json_object":  # llama-cpp-python's server
            body["response_format"] = {"type": "json_object", "schema": schema}
        elif schema_style == "structured_outputs":  # vLLM >= 0.12 extra parameter
            body["structured_outputs"] = {"json": schema}
        elif schema_style == "guided":  # vLLM < 0.12 extra parameter
            body["guided_json"] = schema
        else:
            raise ValueError(f"schema_style must be one of {SCHEMA_STYLES}")
    if request.regex is not None:
        if regex_style == "structured_outputs":
            body["structured_outputs"] = {"regex": request.regex}
        elif regex_style == "guided":
            body["guided_regex"] = request.regex
        elif regex_style != "none":  # "none": unconstrained, checked after the fact
            raise ValueError(f"regex_style must be one of {REGEX_STYLES}")
    if extra_body:
        body.update(extra_body)
    return body


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class OpenAIBackend:
    kind = "openai"

    def __init__(
        self,
        base_urls: Sequence[str] | str,
        served_model: str,
        *,
        model_name: str | None = None,
        weights: str | None = None,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 120.0,
        schema_style: str = "json_schema",
        regex_style: str = "structured_outputs",
        extra_body: Mapping[str, Any] | None = None,
    ):
        if isinstance(base_urls, str):
            base_urls = [u for u in base_urls.split(",") if u.strip()]
        self.base_urls = [normalize_base_url(u) for u in base_urls]
        if not self.base_urls:
            raise ValueError("the openai backend needs at least one base URL")
        if not served_model:
            raise ValueError("the openai backend needs the served model name")
        if schema_style not in SCHEMA_STYLES:
            raise ValueError(f"schema_style must be one of {SCHEMA_STYLES}")
        if regex_style not in REGEX_STYLES:
            raise ValueError(f"regex_style must be one of {REGEX_STYLES}")
        self.served_model = served_model
        if is_stand_in(served_model):  # the test instrument is never recorded as a real model, whatever the config
            weights = STAND_IN
        self._identity = ModelIdentity(name=model_name or served_model, weights=weights or f"endpoint:{served_model}",
                                       kind="llm")
        self.api_key_env = api_key_env
        self.concurrency = max(1, int(concurrency))
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_retries = max(0, int(max_retries))
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self.schema_style = schema_style
        self.regex_style = regex_style
        self.extra_body = dict(extra_body or {})
        self.retries = 0  # retried attempts, all batches
        self.attempts = 0  # HTTP attempts, all batches
        self._counter_lock = threading.Lock()
        self._down_until = {u: 0.0 for u in self.base_urls}
        self._rng = random.Random()
        self._pools: dict[str, Any] = {}  # base URL -> urllib3 pool (made on first use)
        # One pool of `concurrency` threads for every batch, made on first use: it caps the requests in
        # flight across batches running at once (sampling lanes), and a round no longer starts hundreds
        # of threads (measured: bench/coco_graph.py --gpu, docs/benchmarks.md "Overhead against model time").
        self._workers: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.base_urls!r}, served_model={self.served_model!r}, concurrency={self.concurrency})"

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    # -- plumbing -------------------------------------------------------------------------------

    def _pool(self, url: str) -> Any:
        """The connection pool for `url`, made once per URL: through the proxy the environment names
        for it (HTTP(S)_PROXY / NO_PROXY, as httpx and requests honour them) or direct; TLS checked
        against certifi's CA bundle where installed (slim images may lack system CAs)."""
        pool = self._pools.get(url)
        if pool is not None:
            return pool
        import urllib.request

        import urllib3

        try:
            import certifi

            ca_certs = certifi.where()
        except ImportError:
            ca_certs = None
        parts = urlsplit(url)
        proxy = None if urllib.request.proxy_bypass(parts.hostname or "") else urllib.request.getproxies().get(parts.scheme)
        options: dict[str, Any] = dict(maxsize=self.concurrency, block=True, retries=False,  # retries are ours
                                       ca_certs=ca_certs,
                                       timeout=urllib3.Timeout(connect=self.connect_timeout_s, read=self.timeout_s))
        with self._counter_lock:
            if url not in self._pools:
                self._pools[url] = urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
            return self._pools[url]

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"environment variable {self.api_key_env} (named by api_key_env) is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _backoff(self, attempt: int) -> float:
        cap = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        return cap / 2 + self._rng.uniform(0, cap / 2)  # exponential, with jitter

    def _pick(self, i: int, attempt: int) -> str:
        n = len(self.base_urls)
        now = time.monotonic()
        ring = [self.base_urls[(i + attempt + k) % n] for k in range(n)]
        healthy = [u for u in ring if self._down_until[u] <= now]
        return healthy[0] if healthy else min(ring, key=lambda u: self._down_until[u])

    def _mark_down(self, url: str, attempt: int) -> None:
        self._down_until[url] = time.monotonic() + min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt + 1)))

    def _count(self, name: str) -> None:
        with self._counter_lock:
            setattr(self, name, getattr(self, name) + 1)

    # -- the protocol ---------------------------------------------------------------------------

    def complete(self, requests: Sequence[LLMRequest], on_result, on_retry=None) -> None:
        from urllib3.exceptions import HTTPError

        headers = self._headers()
        abort = threading.Event()
        failure: dict[str, Any] = {}
        failure_lock = threading.Lock()

        def give_up(endpoints: list[str], message: str, transient: bool = True) -> None:
            with failure_lock:
                if not failure:
                    failure.update(endpoints=endpoints, error=message, transient=transient)
            abort.set()

        def run(i: int) -> None:
            req = requests[i]
            body = json.dumps(openai_body(
                req, self.served_model, schema_style=self.schema_style, regex_style=self.regex_style,
                extra_body=self.extra_body,
            )).encode()
            tried: list[str] = []
            last_error = ""
            for attempt in range(self.max_retries + 1):
                if abort.is_set():
                    return
                url = self._pick(i, attempt)
                if url not in tried:
                    tried.append(url)
                self._count("attempts")
                delay = None
                try:
                    resp = self._pool(url).request("POST", url + "/chat/completions", body=body, headers=headers,
                                                   pool_timeout=self.timeout_s)
                except HTTPError as exc:  # connection refused/reset, timeouts, protocol errors
                    last_error = f"{url}: {type(exc).__name__}: {exc}"
                    self._mark_down(url, attempt)
                else:
                    code = resp.status
                    if code == 200:
                        try:
                            on_result(i, self._parse(req, json.loads(resp.data)))
                        except (ValueError, KeyError, IndexError, TypeError) as exc:
                            on_result(i, error_result(req, f"{url}: malformed response: {exc}", model=self._identity))
                        return
                    detail = resp.data[:300].decode("utf-8", "replace").replace("\n", " ")
                    last_error = f"{url}: HTTP {code}: {detail}"
                    if code in FATAL_STATUS:
                        give_up([url], last_error, transient=False)
                        return
                    if code not in RETRYABLE_STATUS:  # e.g. 400/422: this request is bad, not the endpoint
                        on_result(i, error_result(req, last_error, model=self._identity))
                        return
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    if retry_after is not None:
                        delay = min(retry_after, self.retry_after_max_s)
                if attempt == self.max_retries:
                    break
                self._count("retries")
                if on_retry is not None:
                    on_retry()
                if abort.wait(delay if delay is not None else self._backoff(attempt)):
                    return
            give_up(tried, last_error)

        if not requests:
            return
        workers = self._executor()
        futures = [workers.submit(run, i) for i in range(len(requests))]
        errors = []
        try:
            for f in futures:
                exc = f.exception()
                if exc is not None:
                    errors.append(exc)
                    abort.set()
        except BaseException:  # interrupted (a run terminated): queued requests of this batch are not sent
            abort.set()
            raise
        if errors:
            raise errors[0]
        if failure:
            raise LLMUnavailableError(failure["endpoints"], failure["error"], transient=failure["transient"])

    def _parse(self, req: LLMRequest, data: Mapping[str, Any]):
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return finish_result(
            req,
            (choice.get("message") or {}).get("content"),
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            finish_reason=choice.get("finish_reason"),
            model=self._identity,
        )

    def _executor(self) -> ThreadPoolExecutor:
        with self._counter_lock:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="llm-openai")
            return self._workers

    def close(self) -> None:
        with self._counter_lock:
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=True)
        for pool in self._pools.values():
            pool.clear()
        self._pools.clear()

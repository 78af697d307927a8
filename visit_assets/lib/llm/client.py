"""`LLMClient`: the one way generation stages talk to models (cache, dedup, accounting, progress)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, cast, runtime_checkable

from visit_assets.lib.llm.budget import Budget, BudgetExhausted
from visit_assets.lib.llm.cache import FileCache, LLMCache, NullCache
from visit_assets.lib.llm.types import FAILURE_KINDS, LLMRequest, LLMResult, LLMUnavailableError
from visit_assets.lib.models.identity import ModelIdentity

ResultSink = Callable[[int, LLMResult], None]
ProgressFn = Callable[[int, int], None]
PROGRESS_EVERY_S = 30.0  # besides every ~10% of the batch


@runtime_checkable
class Backend(Protocol):
    """What a model backend must provide.

    `complete` calls `on_result(i, result)` once for every request i as soon as it finishes (from
    any thread), in any order. A request that failed on its own becomes a result with status
    "error". If the model/endpoint goes away for good it raises `LLMUnavailableError` after
    reporting every result that did finish. A backend that retries (it has a `retries` counter)
    also takes `on_retry`, called once per retried attempt of this call's requests.
    """

    kind: str

    @property
    def identity(self) -> ModelIdentity: ...

    def complete(self, requests: Sequence[LLMRequest], on_result: ResultSink) -> None: ...


class RetryingBackend(Backend, Protocol):
    """A backend that retries: it counts them and reports each retried attempt to `on_retry`."""

    retries: int

    def complete(self, requests: Sequence[LLMRequest], on_result: ResultSink,
                 on_retry: Callable[[], None] | None = None) -> None: ...


@dataclass
class LLMStats:
    requests: int = 0  # rows asked for
    cache_hits: int = 0  # rows answered from the persistent cache
    deduplicated: int = 0  # rows answered by an identical request in the same batch
    sent: int = 0  # unique requests handed to the backend
    completed: int = 0  # of those, how many came back (any status)
    tokens_in: int = 0  # prompt tokens of the sent requests
    tokens_out: int = 0  # completion tokens of the sent requests
    seconds: float = 0.0  # wall time inside generate()
    backend_seconds: float = 0.0  # wall time inside the backend
    retries: int = 0  # transport retries (openai backend)
    failures: dict[str, int] = field(default_factory=lambda: {k: 0 for k in FAILURE_KINDS})  # rows by failed status

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_out / self.backend_seconds if self.backend_seconds > 0 else 0.0

    def add(self, other: LLMStats) -> None:
        for name in ("requests", "cache_hits", "deduplicated", "sent", "completed", "tokens_in", "tokens_out", "retries"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds += other.seconds
        self.backend_seconds += other.backend_seconds
        for k, v in other.failures.items():
            self.failures[k] = self.failures.get(k, 0) + v

    def as_dict(self) -> dict[str, int | float]:
        """Flat dict (e.g. for Dagster metadata)."""
        out: dict[str, int | float] = {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "deduplicated": self.deduplicated,
            "sent": self.sent,
            "completed": self.completed,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "seconds": round(self.seconds, 3),
            "backend_seconds": round(self.backend_seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "retries": self.retries,
            "cache_hit_rate": round(self.cache_hits / self.requests, 4) if self.requests else 0.0,
        }
        for kind in FAILURE_KINDS:
            out[f"failures_{kind}"] = self.failures.get(kind, 0)
        return out


class _Progress:
    def __init__(self, total: int, fn: ProgressFn | None):
        self.total, self.fn = total, fn
        self.step = max(1, math.ceil(total / 10))
        self.next_mark = 0
        self.last_t = time.monotonic()
        self.last_done = -1

    def update(self, done: int, *, force: bool = False) -> None:
        if self.fn is None or done == self.last_done:
            return
        now = time.monotonic()
        if force or done >= self.next_mark or done == self.total or now - self.last_t >= PROGRESS_EVERY_S:
            self.fn(done, self.total)
            self.last_done, self.last_t = done, now
            self.next_mark = (done // self.step + 1) * self.step


class LLMClient:
    """Runs batches of requests through a backend with a persistent response cache.

    generate() returns one result per request, in order. Identical requests (same cache key)
    are sent once; cached ones are not sent at all; each finished result is cached as soon as it
    finishes. Malformed output is a status on its row, never an exception.
    """

    def __init__(self, backend: Backend, cache: LLMCache | FileCache | NullCache | None = None):
        self.backend = backend
        self.cache = cache if cache is not None else NullCache()
        self.stats = LLMStats()  # cumulative over this client's life
        self.last_stats = LLMStats()  # the most recent generate() call (the running one, while it runs)
        self._stats_lock = threading.Lock()  # generate() may run in several threads at once

    @property
    def identity(self) -> ModelIdentity:
        return self.backend.identity

    def generate(self, requests: Iterable[LLMRequest], progress: ProgressFn | None = None, *,
                 budget: Budget | None = None, scope: str = "", stats: LLMStats | None = None) -> list[LLMResult]:
        """`budget`: caps on what run `scope` sends (every call with that scope draws on one ledger,
        kept in the cache's store); when it runs out, every sent request finishes and is cached,
        then `BudgetExhausted` is raised. `stats`: filled live with this call's figures (what a
        caller running several calls at once reads instead of `last_stats`)."""
        if budget is not None and budget.capped and not scope:
            raise ValueError("a capped budget needs the scope (run id) it is counted in")
        t0 = time.perf_counter()
        reqs = list(requests)
        total = len(reqs)
        stats = stats if stats is not None else LLMStats()
        stats.requests = total
        self.last_stats = stats  # live while the batch runs (progress reads its token counts)
        ident = self.backend.identity
        keys = [r.cache_key(ident) for r in reqs]
        positions: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            positions.setdefault(k, []).append(i)

        results: list[LLMResult | None] = [None] * total
        found = self.cache.get_many(positions.keys()) if total else {}
        for key, record in found.items():
            for i in positions[key]:
                results[i] = LLMResult.from_record(record, cache_key=key, cached=True, tag=reqs[i].tag)
        stats.cache_hits = sum(len(positions[k]) for k in found)
        todo = [k for k in positions if k not in found]
        stats.deduplicated = sum(len(positions[k]) - 1 for k in todo)
        to_send = [reqs[positions[k][0]] for k in todo]

        lock = threading.Lock()
        done = [stats.cache_hits]
        reporter = _Progress(total, progress)
        reporter.update(done[0], force=True)

        def on_result(j: int, res: LLMResult) -> None:
            key = todo[j]
            res = replace(res, cache_key=key, cached=False, model=res.model or ident)
            if res.finished:
                self.cache.put(key, res)  # committed now: a killed run keeps it
            with lock:
                for i in positions[key]:
                    if results[i] is None:
                        done[0] += 1
                    results[i] = res.with_run_fields(cached=False, tag=reqs[i].tag)
                stats.completed += 1
                stats.tokens_in += res.prompt_tokens
                stats.tokens_out += res.completion_tokens
                reporter.update(done[0])

        tb = time.perf_counter()
        try:
            if to_send:
                self._send(to_send, on_result, stats, budget, scope)
        except LLMUnavailableError as exc:
            exc.partial = list(results)
            raise
        finally:
            stats.backend_seconds = time.perf_counter() - tb if to_send else 0.0
            for r in results:
                if r is not None and r.status in stats.failures:
                    stats.failures[r.status] += 1
            stats.seconds = time.perf_counter() - t0
            self.last_stats = stats
            with self._stats_lock:
                self.stats.add(stats)

        missing = [i for i, r in enumerate(results) if r is None]
        if missing and budget is not None and stats.sent < len(to_send):
            raise BudgetExhausted(scope, budget, self.cache.spend(scope), total - len(missing), total, partial=list(results))
        if missing:
            raise RuntimeError(f"backend {self.backend.kind} returned no result for {len(missing)} request(s)")
        reporter.update(total, force=True)
        return results  # type: ignore[return-value]

    def _send(self, to_send: list[LLMRequest], on_result: ResultSink, stats: LLMStats, budget: Budget | None,
              scope: str) -> None:
        """Hand the requests to the backend, counting `stats.sent`. With a budget, each chunk is
        reserved in run `scope`'s ledger first (capped: in the chunks the budget grants) and what it
        spent is recorded after; requests a stopped chunk never sent are given back."""
        if budget is None or not scope:
            stats.sent = len(to_send)
            self._complete(to_send, on_result, stats)
            return
        in_flight = int(getattr(self.backend, "concurrency", 1) or 1)
        while stats.sent < len(to_send):
            n, _ = self.cache.reserve(scope, budget, len(to_send) - stats.sent, in_flight)
            if n == 0:
                return
            start, tokens_before = stats.sent, (stats.tokens_in, stats.tokens_out)
            delivered, count_lock = [0], threading.Lock()

            def sink(j: int, res: LLMResult, start: int = start, delivered: list[int] = delivered,
                     count_lock: threading.Lock = count_lock) -> None:  # this chunk's, bound now
                with count_lock:
                    delivered[0] += 1
                on_result(start + j, res)

            stats.sent += n
            try:
                self._complete(to_send[start : start + n], sink, stats)
            finally:
                unsent = n - delivered[0]  # only when the chunk stopped early (endpoint gone, error)
                stats.sent -= unsent
                self.cache.record(scope, -unsent, stats.tokens_in - tokens_before[0], stats.tokens_out - tokens_before[1])

    def _complete(self, batch: list[LLMRequest], sink: ResultSink, stats: LLMStats) -> None:
        """The backend's complete(), retries counted for this batch only (other batches may be
        sharing the backend at the same time)."""
        if not hasattr(self.backend, "retries"):
            self.backend.complete(batch, sink)
            return
        lock = threading.Lock()

        def retried() -> None:
            with lock:
                stats.retries += 1

        cast(RetryingBackend, self.backend).complete(batch, sink, on_retry=retried)

    def close(self) -> None:
        self.cache.close()
        close = getattr(self.backend, "close", None)
        if close:
            close()

"""Several LLM batch calls inside one step (e.g. the sampling loop's rounds), reported as one."""

import threading
import time
from typing import Any

from ...lib.llm import LLMRequest, LLMResult
from .resources import LLMResource, RoleLLM

# rates, and the run's budget figures (`llm_run_*`, running totals): each round's value replaces the last
_NOT_SUMMED = {"llm_tokens_per_s", "llm_cache_hit_rate"}


class LLMRounds:
    """A `generate` callable for pure loops; sums every round's stats into one metadata dict.

    `shares`: another LLMRounds of the same step (e.g. the checker's next to the generator's) whose
    totals this one adds to, so the step reports one `llm_sent` over every role."""

    def __init__(self, context: Any, llm: LLMResource | RoleLLM, label: str, shares: "LLMRounds | None" = None,
                 noun: str = "round"):
        self.context, self.llm, self.label, self.noun = context, llm, label, noun
        self.rounds = 0
        self._meta: dict[str, Any] = shares._meta if shares else {}
        self._lock: threading.Lock = shares._lock if shares else threading.Lock()  # rounds of several sampling lanes at once
        # seconds with at least one batch in flight: lanes' batches overlap, so their own seconds do not add up
        self._busy: dict[str, Any] = shares._busy if shares else {"in_flight": 0, "since": 0.0, "seconds": 0.0}

    def __call__(self, requests: list[LLMRequest]) -> list[LLMResult]:
        with self._lock:
            self.rounds += 1
            label = f"{self.label} {self.noun} {self.rounds}"
            self._enter(+1)
        try:
            results, meta = self.llm.run_batch(self.context, requests, label=label)
        finally:
            with self._lock:
                self._enter(-1)
        with self._lock:
            self._merge(meta)
        return results

    def _enter(self, step: int) -> None:
        busy, now = self._busy, time.monotonic()
        if busy["in_flight"] == 0:
            busy["since"] = now
        busy["in_flight"] += step
        if busy["in_flight"] == 0:
            busy["seconds"] += now - busy["since"]

    def _merge(self, meta: dict[str, Any]) -> None:
        for key, value in meta.items():
            summable = isinstance(value, (int, float)) and not isinstance(value, bool) and key not in _NOT_SUMMED \
                and not key.startswith("llm_run_")
            self._meta[key] = self._meta.get(key, 0) + value if summable else value

    def metadata(self) -> dict[str, Any]:
        meta = dict(self._meta)
        seconds = self._busy["seconds"] or meta.get("llm_backend_seconds") or 0
        meta["llm_tokens_per_s"] = round(meta.get("llm_tokens_out", 0) / seconds, 2) if seconds else 0.0
        meta["llm_rounds"] = self.rounds
        if meta.get("llm_requests"):
            meta["llm_cache_hit_rate"] = round(meta.get("llm_cache_hits", 0) / meta["llm_requests"], 4)
        return meta

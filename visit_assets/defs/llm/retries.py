"""Step retries of the steps that send LLM requests: only after a transient outage, with backoff.

The openai backend already retries each request (5 times over about 15 s, lib/llm/openai_backend.py),
which rides out a dropped connection or a short 503 burst. What outlasts it is an endpoint that is
gone for minutes (a vLLM server restarting loads its weights for one to a few minutes, a rolling
redeploy of the fleet): then the backend raises `LLMUnavailableError` and the step fails. Dagster
retries the step after 30 s, then about 90 s, then about 210 s (exponential backoff from the base
delay, each +- 30 s of jitter so the partitions of a backfill do not return at the same second):
some five minutes in all, the length of a restart. Both numbers are settings
(VISIT_LLM_STEP_RETRIES, VISIT_LLM_STEP_RETRY_DELAY_S), read when the definitions load; 0 retries
turns this off.

A retry pays for nothing twice: every answer that finished is in the response cache
(lib/llm/cache.py) before the step fails, so the retried step sends only the requests that had no
answer yet (tests/llm/test_llm_step_retries.py).

Dagster retries any failure of a step with a retry policy unless it is `dg.Failure(allow_retries=
False)`. `retry_only_transient` makes every other failure of the step that form: a wrong key, URL or
model (401/403/404), a misconfigured resource, a missing parent or a bug fail the step at once, as
they would fail the same way on every retry.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import dagster as dg

from ... import settings
from ...lib.llm import LLMUnavailableError

F = TypeVar("F", bound=Callable[..., Any])


def llm_retry_policy() -> dg.RetryPolicy | None:
    """The retry policy of the LLM steps (module docstring); None when retries are off."""
    retries = settings.llm_step_retries()
    if retries <= 0:
        return None
    return dg.RetryPolicy(max_retries=retries, delay=settings.llm_step_retry_delay_s(),
                          backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


LLM_RETRY_POLICY = llm_retry_policy()


def is_transient(exc: BaseException) -> bool:
    """A failure that a later attempt of the same step may not meet: an LLM endpoint that stayed
    down through the backend's own retries (not one that refused the key, URL or model)."""
    return isinstance(exc, LLMUnavailableError) and exc.transient


@contextlib.contextmanager
def _no_retry_unless_transient() -> Iterator[None]:
    """Re-raise any failure of the body as `dg.Failure(allow_retries=False)` caused by it, except a
    transient LLM outage and Dagster's own signals (Failure, RetryRequested, DagsterError), which say
    themselves whether to retry. Why: a retry policy retries every other failure, and a wrong key or
    model, a missing parent or a bug would only fail the same way again, minutes later."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc) or isinstance(exc, (dg.Failure, dg.RetryRequested, dg.DagsterError)):
            raise
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def retry_only_transient(fn: F) -> F:
    """Under `@dg.asset(retry_policy=LLM_RETRY_POLICY)` (or multi_asset): every failure of the step
    but a transient LLM outage becomes `dg.Failure(allow_retries=False)` (caused by the original
    exception, which the run's error shows), so the policy retries outages only. Without a policy
    (retries off) the function is returned as it is."""
    if LLM_RETRY_POLICY is None:
        return fn
    if inspect.isgeneratorfunction(fn):  # multi-assets yield their results
        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            with _no_retry_unless_transient():
                yield from fn(*args, **kwargs)

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any) -> Any:
        with _no_retry_unless_transient():
            return fn(*args, **kwargs)

    return function  # type: ignore[return-value]

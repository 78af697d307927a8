"""A spending cap per run: requests sent and output tokens, with an estimated cost.

The cap counts only what is sent to a model: answers from the cache are free, so a run stopped by
its budget is continued by the next run (a new budget) without paying for anything twice. What a
run has spent is kept in a ledger shared by its steps (the response cache's store: see cache.py),
keyed by the run, so parallel steps and processes draw on one budget. Requests are reserved
before they are sent (and given back if a stopped batch never sent them), so the request cap is
exact; output tokens are known only once answers arrive, so the token cap may be passed by at most
one chunk of requests per step in flight. Without a cap nothing is chunked, and the ledger still
records the spend (for the estimated cost).
"""

from __future__ import annotations

from dataclasses import dataclass

CHUNK = 256  # requests sent between two budget checks when a cap is set (enough to keep a fleet busy)


@dataclass(frozen=True)
class Spend:
    """What a run has sent so far (all its steps and roles)."""

    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0

    def plus(self, requests: int = 0, tokens_in: int = 0, tokens_out: int = 0) -> Spend:
        return Spend(self.requests + requests, self.tokens_in + tokens_in, self.tokens_out + tokens_out)


@dataclass(frozen=True)
class Budget:
    """Caps per run (None: no cap) and the user's prices per million tokens (for the estimate)."""

    max_requests: int | None = None
    max_output_tokens: int | None = None
    price_per_m_input: float = 0.0
    price_per_m_output: float = 0.0
    chunk: int = CHUNK

    def __post_init__(self) -> None:
        for name in ("max_requests", "max_output_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 (or unset for no cap), got {value}")
        if self.price_per_m_input < 0 or self.price_per_m_output < 0:
            raise ValueError("prices per million tokens must be >= 0")
        if self.chunk < 1:
            raise ValueError("chunk must be >= 1")

    @property
    def capped(self) -> bool:
        return self.max_requests is not None or self.max_output_tokens is not None

    def cost(self, spend: Spend) -> float:
        """Estimated cost of `spend` at the given prices (0 when no price is given)."""
        return (spend.tokens_in * self.price_per_m_input + spend.tokens_out * self.price_per_m_output) / 1e6

    def grant(self, spend: Spend, wanted: int, in_flight: int = 1) -> int:
        """How many of `wanted` requests may be sent next, given what the run has spent. A chunk is
        at least 4x the backend's requests in flight, so its tail leaves the endpoints idle briefly."""
        if self.max_output_tokens is not None and spend.tokens_out >= self.max_output_tokens:
            return 0
        n = min(wanted, max(self.chunk, 4 * in_flight)) if self.capped else wanted
        if self.max_requests is not None:
            n = min(n, max(0, self.max_requests - spend.requests))
        return max(0, n)

    def describe(self, spend: Spend) -> str:
        parts = [f"{spend.requests:,}" + (f"/{self.max_requests:,}" if self.max_requests is not None else "") + " requests",
                 f"{spend.tokens_out:,}" + (f"/{self.max_output_tokens:,}" if self.max_output_tokens is not None else "")
                 + " output tokens", f"{spend.tokens_in:,} input tokens"]
        if self.price_per_m_input or self.price_per_m_output:
            parts.append(f"estimated cost {self.cost(spend):.4f}")
        return ", ".join(parts)


class BudgetExhausted(RuntimeError):
    """The run's budget ran out before every request of a batch was sent.

    Raised after every sent request finished and was cached. `partial` holds the results per
    request (None where the request was not sent)."""

    def __init__(self, scope: str, budget: Budget, spend: Spend, answered: int, total: int, partial: list | None = None):
        self.scope, self.budget, self.spend = scope, budget, spend
        self.answered, self.total, self.partial = answered, total, partial
        super().__init__(
            f"the LLM budget of run {scope} is spent ({budget.describe(spend)}): {answered:,} of this batch's "
            f"{total:,} requests are answered and cached, the other {total - answered:,} were not sent. "
            "Re-run to continue (a new run has a new budget; cached answers are not sent again)")

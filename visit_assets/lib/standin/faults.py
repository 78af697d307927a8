"""Planted faults: which request gets which, decided by a hash of the request (deterministic, so a
re-run plants the same faults), and what each fault does to a competent reply.

Content faults change the reply; transport faults change how it is delivered. A request gets at
most one of each, with the configured probability. `ROLE_FAULTS` says which content faults make
sense for which prompt role (an unsupported claim in a conversation, a refusal in an answer, an
unclear verdict from a checker).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .phrasing import digest

UNSUPPORTED, TRUNCATED, REPETITION, REFUSAL = "unsupported", "truncated", "repetition", "refusal"
UNPARSEABLE, EMPTY, SOURCE_LEAK, TOO_SHORT = "unparseable", "empty", "source_leak", "too_short"
SERVER_ERROR, SLOW = "server_error", "slow"
CONTENT = (UNSUPPORTED, TRUNCATED, REPETITION, REFUSAL, UNPARSEABLE, EMPTY, SOURCE_LEAK, TOO_SHORT)
TRANSPORT = (SERVER_ERROR, SLOW)
FAULTS = CONTENT + TRANSPORT

ROLE_FAULTS = {
    "generate": (UNSUPPORTED, TRUNCATED, REPETITION, REFUSAL, UNPARSEABLE, EMPTY),
    "answer": (TRUNCATED, REPETITION, REFUSAL, SOURCE_LEAK, TOO_SHORT, EMPTY),
    "example_answer": (TRUNCATED, REPETITION, REFUSAL, SOURCE_LEAK, TOO_SHORT, EMPTY),
    "describe": (TRUNCATED, REPETITION, REFUSAL, TOO_SHORT, EMPTY),
    "instruction": (SOURCE_LEAK, EMPTY),
    "merge": (EMPTY,),
    "verify": (UNPARSEABLE,),
    "fit": (UNPARSEABLE,),
    "judge": (UNPARSEABLE,),
    "pairwise": (UNPARSEABLE,),
    "pairwise_example": (UNPARSEABLE,),
    "declarative": (),
    "layout": (REFUSAL, TOO_SHORT, EMPTY),  # each leaves objects out: the product keeps the layout text
}
UNCLEAR = {"verify": "Probably, mostly.", "fit": "Possibly.", "judge": "Pretty good overall.",
           "pairwise": "Both have merits.", "pairwise_example": "Both have merits.", "generate": None}
REFUSAL_TEXT = "I'm sorry, but I can't help with that request."


@dataclass(frozen=True)
class FaultPlan:
    """Probability of each fault per request (where its role admits it), a seed, the slow delay."""

    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    slow_s: float = 1.0

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
        if any(not 0 <= r <= 1 for r in self.rates.values()) or sum(self.rates.get(f, 0) for f in CONTENT) > 1:
            raise ValueError("fault rates must be in [0, 1] and the content faults must sum to at most 1")

    @classmethod
    def parse(cls, text: str, seed: int = 0, slow_s: float = 1.0) -> FaultPlan:
        """From "unsupported=0.1,empty=0.05" (the CLI form)."""
        rates = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            rates[name.strip()] = float(value)
        return cls(rates, seed, slow_s)

    def content(self, role: str, key: str) -> str | None:
        u = digest("content", self.seed, key) / 16**12
        for fault in ROLE_FAULTS.get(role, ()):
            u -= self.rates.get(fault, 0.0)
            if u < 0:
                return fault
        return None

    def transport(self, key: str) -> str | None:
        u = digest("transport", self.seed, key) / 16**12
        for fault in TRANSPORT:
            u -= self.rates.get(fault, 0.0)
            if u < 0:
                return fault
        return None


def truncate(text: str) -> str:
    words = text.split(" ")
    return " ".join(words[: max(1, int(len(words) * 0.6))])


def loop(text: str) -> str:
    return " ".join([text.strip()] * 6)


def source_leak(text: str) -> str:
    return "Based on the description provided, " + text[:1].lower() + text[1:]


def too_short(text: str) -> str:
    return " ".join(text.split()[:6]).rstrip(",;:") + "."

"""A step's LLM rounds reported as one, when sampling lanes run rounds at once (defs/llm/rounds.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from visit_assets.defs.llm.rounds import LLMRounds


class SlowBatches:
    """`run_batch` as LLMResource has it: each batch takes 0.2 s and reports its own figures."""

    def __init__(self):
        self.labels: list[str] = []
        self.together = threading.Barrier(2, timeout=30)

    def run_batch(self, context, requests, *, label):
        self.labels.append(label)
        self.together.wait()  # both lanes' batches are in flight at the same time
        time.sleep(0.2)
        n = len(requests)
        return [f"r{i}" for i in range(n)], {"llm_requests": n, "llm_tokens_out": 10 * n, "llm_backend_seconds": 0.2,
                                             "llm_cache_hits": 0, "llm_model": "m"}


def test_rounds_of_two_lanes_add_up_and_their_rate_counts_overlapping_time_once():
    llm = SlowBatches()
    generate = LLMRounds(None, llm, "conversations")
    verify = LLMRounds(None, llm, "verification", shares=generate)

    def lane(k: int) -> None:
        for _ in range(3):
            assert len(generate(["a"] * k)) == k
            verify(["v"] * k)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lane, [2, 5]))
    meta = generate.metadata()
    assert generate.rounds == 6 and verify.rounds == 6 and len(set(llm.labels)) == 12
    assert meta["llm_requests"] == 3 * 2 * (2 + 5) and meta["llm_tokens_out"] == 10 * meta["llm_requests"]
    assert meta["llm_backend_seconds"] == pytest.approx(12 * 0.2)  # each batch's own seconds still add up
    # 6 pairs of overlapping 0.2 s batches: ~1.2 s in flight, not the 2.4 s the batches' seconds sum to
    assert 1.2 <= meta["llm_requests"] * 10 / meta["llm_tokens_per_s"] < 2.0
    assert meta["llm_cache_hit_rate"] == 0 and meta["llm_model"] == "m"

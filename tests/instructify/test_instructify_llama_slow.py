"""End to end on 3 sample images through the real SmolLM2-135M (llama_cpp). The model mostly
ignores instructions, so this asserts structure, accounting and re-run identity, not quality."""

from __future__ import annotations

import pytest

from visit_assets.lib.instructify.export import to_llava, validate_llava
from visit_assets.lib.instructify.sampling import SamplingConfig, sample_conversations, summarize
from visit_assets.lib.llm import LLMCache, LLMClient, SamplingParams, make_backend

pytestmark = pytest.mark.slow


def test_loop_on_real_model(tmp_path, sample_records, registry):
    records = [sample_records[k] for k in ("coffee.jpg", "chelsea_cat.jpg", "motion_blurred_clock.jpg")]
    cfg = SamplingConfig(max_iterations=2, generation=SamplingParams(temperature=0.2, max_tokens=64),
                         verification=SamplingParams(temperature=0.0, max_tokens=6))
    client = LLMClient(make_backend("llama_cpp", n_threads=1), LLMCache(tmp_path / "cache.sqlite"))
    try:
        calls = []

        def generate(requests):
            calls.append(len(requests))
            return client.generate(requests)

        convs, attempts = sample_conversations(records, registry, generate, cfg, seed=0)
        its = [a for a in attempts if a["status"] != "stopped"]
        stops = [a for a in attempts if a["status"] == "stopped"]
        assert len(stops) == 3 and all(s["reason"] in ("max_iterations", "too_many_failures", "facts_consumed",
                                                       "facts_exhausted") for s in stops)
        assert calls[0] == 3 and len(calls) <= 2 * cfg.max_iterations  # one batched call per round and stage
        assert sum(calls) == client.stats.requests
        label = client.identity.label()
        for a in its:
            assert a["status"] in ("accepted", "rejected") and a["model"] == label
            assert len(a["generation_cache_key"]) == 32 and len(a["verify_cache_keys"]) == len(a["verdicts"])
        assert sum(1 for a in its if a["status"] == "accepted") == len(convs)
        assert validate_llava(to_llava(convs)) == []
        s = summarize(convs, attempts)
        assert s["iterations"] == len(its) and s["accepted"] + sum(s["rejected_by_reason"].values()) == len(its)

        # a re-run answers everything from the cache and reproduces every row
        before = client.stats.sent
        again = sample_conversations(records, registry, client.generate, cfg, seed=0)
        assert again == (convs, attempts)
        assert client.stats.sent == before
    finally:
        client.close()

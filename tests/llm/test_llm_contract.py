"""Contract every backend keeps, checked on the real SmolLM2 GGUF: in process (llama_cpp) and
through a real `python -m llama_cpp.server` (openai). SmolLM2-135M is not clever, so these assert
structure, accounting and determinism, not content."""

from __future__ import annotations

import pytest

from visit_assets.lib.llm import LLMCache, LLMClient, LLMRequest, SamplingParams
from visit_assets.lib.llm.llama_cpp_backend import gguf_identity, prompt_order

pytestmark = pytest.mark.slow

SYSTEM = "You describe photos for a dataset. Answer in one short sentence."
IMAGES = ["a red bicycle leaning on a brick wall", "two cats asleep on a sofa", "a rocket lifting off at dawn"]
QUESTIONS = ["What is the main object?", "What colour dominates?"]
SCHEMA = {
    "type": "object",
    "properties": {"object": {"type": "string", "maxLength": 40}, "count": {"type": "integer"}},
    "required": ["object", "count"],
}


def batch(max_tokens: int = 12, **params) -> list[LLMRequest]:
    p = SamplingParams(max_tokens=max_tokens, **params)
    return [
        LLMRequest.chat(f"Image: {img}\nQuestion: {q}", system=SYSTEM, params=p, tag=(i, j))
        for j, q in enumerate(QUESTIONS)
        for i, img in enumerate(IMAGES)
    ]


def test_order_and_token_counts(real_backend):
    reqs = batch()
    results = LLMClient(real_backend).generate(reqs)
    assert len(results) == len(reqs)
    assert [r.tag for r in results] == [r.tag for r in reqs]  # one result per request, in order
    for req, res in zip(reqs, results, strict=True):
        assert res.status in ("ok", "truncated"), res
        assert res.prompt_tokens > 20 and res.completion_tokens > 0
        assert res.model == real_backend.identity and res.model.weights == gguf_identity(real_backend_path()).weights
        assert res.cache_key == req.cache_key(real_backend.identity)
    # the image text is part of each prompt: different images give different prompt lengths or answers
    assert len({(r.prompt_tokens, r.text) for r in results}) > 1


def real_backend_path():
    from visit_assets.lib.llm.llama_cpp_backend import default_gguf_path

    return default_gguf_path()


def test_deterministic_at_temperature_zero(real_backend):
    reqs = batch(seed=7)
    a = LLMClient(real_backend).generate(reqs)
    b = LLMClient(real_backend).generate(list(reversed(reqs)))[::-1]  # another order, same answers
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.completion_tokens for r in a] == [r.completion_tokens for r in b]


@pytest.mark.parametrize("name", ["llama_backend", "llama_seq_backend"])
def test_deterministic_with_seed_when_sampling(name, request):
    """In process, a seeded sampled request gives the same text in any order: the backend orders
    and batches a call's requests itself. A server cannot promise this (next test)."""
    backend = request.getfixturevalue(name)
    reqs = batch(max_tokens=10, temperature=0.8, seed=11)[:4]
    a = LLMClient(backend).generate(reqs)
    b = LLMClient(backend).generate(list(reversed(reqs)))[::-1]
    assert [r.text for r in a] == [r.text for r in b]


def test_server_sampling_is_reproducible_through_the_cache(server_backend, tmp_path):
    """Through a server, sampled text depends on what the server decoded before (its KV-cache
    reuse changes the batch shapes, so the logits differ in the last bits), so the same seeded
    request in another order may sample other words. What the product promises instead: the seed
    reaches the server and is part of the cache key, and a re-run replays the stored answers
    without asking the server again."""
    reqs = batch(max_tokens=10, temperature=0.8, seed=11)[:4]
    cache = LLMCache(tmp_path / "c.sqlite")
    first = LLMClient(server_backend, cache=cache).generate(reqs)
    replay = LLMClient(server_backend, cache=cache).generate(list(reversed(reqs)))[::-1]
    assert all(r.status in ("ok", "truncated") for r in first)
    assert [r.text for r in replay] == [r.text for r in first]
    assert all(r.cached for r in replay) and not any(r.cached for r in first)
    other_seed = batch(max_tokens=10, temperature=0.8, seed=12)[:4]
    assert {r.cache_key(server_backend.identity) for r in other_seed}.isdisjoint({r.cache_key for r in first})


def test_truncated_at_max_tokens(real_backend):
    reqs = [LLMRequest.chat("Write a long story about a lighthouse keeper.", params=SamplingParams(max_tokens=2)),
            LLMRequest.chat("Say hello.", params=SamplingParams(max_tokens=24))]
    short, normal = LLMClient(real_backend).generate(reqs)
    assert short.status == "truncated" and short.finish_reason == "length"
    assert short.completion_tokens == 2 and short.error
    assert normal.status in ("ok", "truncated") and normal.completion_tokens > 0  # the other row survives


def test_schema_constrained_output_parses(real_backend):
    reqs = [
        LLMRequest.chat(f"Image: {img}\nGive the main object and how many there are, as JSON.", system=SYSTEM,
                        json_schema=SCHEMA, params=SamplingParams(max_tokens=64), tag=i)
        for i, img in enumerate(IMAGES)
    ]
    results = LLMClient(real_backend).generate(reqs)
    for r in results:
        assert r.status == "ok", (r.status, r.text, r.error)
        assert isinstance(r.parsed, dict) and isinstance(r.parsed["object"], str) and isinstance(r.parsed["count"], int)


def test_backends_share_cache_entries(llama_backend, server_backend, tmp_path):
    """Same GGUF in process or behind a server: same identity, so one cache serves both."""
    assert llama_backend.identity.name == server_backend.identity.name
    assert llama_backend.identity.weights == server_backend.identity.weights
    path = tmp_path / "c.sqlite"
    reqs = batch(max_tokens=8)[:3]
    LLMClient(llama_backend, LLMCache(path)).generate(reqs)
    via_server = LLMClient(server_backend, LLMCache(path))
    results = via_server.generate(reqs)
    assert via_server.last_stats.sent == 0 and all(r.cached for r in results)


def test_prompt_order_groups_shared_prefixes():
    reqs = batch()  # question-major: images interleave
    order = prompt_order(reqs)
    images = [reqs[i].messages[1]["content"].split("\n")[0] for i in order]
    assert images == sorted(images)  # each image's questions are now adjacent

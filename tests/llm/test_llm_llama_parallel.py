"""The llama_cpp backend's continuous-batching path (n_parallel > 1) on the real GGUF: row-level
failures stay on their row, stop strings, context limits, shared-prefix KV reuse."""

from __future__ import annotations

import pytest

from visit_assets.lib.llm import LLMClient, LLMRequest, SamplingParams
from visit_assets.lib.llm.llama_cpp_backend import LlamaCppBackend

pytestmark = pytest.mark.slow

SYSTEM = "You write short captions for photographs in a dataset. " * 4  # a long shared prefix


def test_rows_fail_alone(llama_backend):
    assert llama_backend.n_parallel > 1
    reqs = [
        LLMRequest.chat("Caption: a lighthouse at night.", system=SYSTEM, params=SamplingParams(max_tokens=16)),
        LLMRequest.chat("word " * 2500, params=SamplingParams(max_tokens=8)),  # longer than n_ctx=2048
        LLMRequest.chat("Caption: a lighthouse at night.", system=SYSTEM, params=SamplingParams(max_tokens=1)),
        LLMRequest.chat("Caption: a red tram in the snow.", system=SYSTEM, params=SamplingParams(max_tokens=16)),
    ]
    client = LLMClient(llama_backend)
    results = client.generate(reqs)
    assert results[1].status == "error" and "exceed context window" in results[1].error
    assert results[2].status == "truncated" and results[2].completion_tokens == 1
    for r in (results[0], results[3]):
        assert r.status in ("ok", "truncated") and r.completion_tokens > 0 and r.prompt_tokens > 40
    assert results[0].prompt_tokens == results[2].prompt_tokens  # same prompt, same count
    assert client.last_stats.failures["error"] == 1


def test_stop_string_cuts_the_text(llama_backend):
    filler = LLMRequest.chat("Say yes.", params=SamplingParams(max_tokens=4))
    base = LLMRequest.chat("List the colours of the rainbow, separated by commas.", params=SamplingParams(max_tokens=40))
    full = LLMClient(llama_backend).generate([base, filler])[0].text
    words = [w.strip(",.") for w in full.split() if len(w.strip(",.")) > 3]
    assert len(words) >= 2, full
    stop = words[1]
    cut = LLMRequest.chat(base.messages[0]["content"], params=SamplingParams(max_tokens=40, stop=(stop,)))
    res = LLMClient(llama_backend).generate([cut, filler])[0]
    assert res.finish_reason == "stop" and stop not in res.text
    assert full.startswith(res.text) and len(res.text) < len(full)


def test_fresh_and_warm_backends_agree(gguf_path, llama_backend):
    """A backend that already ran batches answers a batch exactly as a fresh one does."""
    reqs = [LLMRequest.chat(f"Caption: photo {i} of a harbour.", system=SYSTEM, params=SamplingParams(max_tokens=12))
            for i in range(6)]
    warm = LLMClient(llama_backend).generate(reqs)
    fresh_backend = LlamaCppBackend(gguf_path, n_threads=1, n_parallel=llama_backend.n_parallel)
    try:
        fresh = LLMClient(fresh_backend).generate(reqs)
    finally:
        fresh_backend.close()
    assert [r.text for r in warm] == [r.text for r in fresh]
    assert [r.prompt_tokens for r in warm] == [r.prompt_tokens for r in fresh]

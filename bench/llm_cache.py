"""Fully cached re-run of a large LLM batch: wall time and backend calls (must be 0).

    python bench/llm_cache.py              # 10,000 requests
    python bench/llm_cache.py --n 50000

1. Populate a fresh cache file with N finished results under the real SmolLM2 GGUF identity
   (name + sha256), through the normal LLMClient write path (one committed row per result). The
   answers come from a stand-in backend with the same identity that answers instantly with
   realistic ~45-token texts: generating 10,000 real answers would take hours on this CPU, and the
   re-run below never looks at who wrote the rows.
2. Re-run the same N requests in a new client (new SQLite connection) through the real
   `llama_cpp` backend, wrapped to count what reaches it. Expected: 0 backend calls, the model
   never loaded, all N results `cached`.
Requests have the VQA stages' shape: shared system prompt + per-image description + question.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from visit_assets.lib.llm import LLMCache, LLMClient, LLMRequest, SamplingParams  # noqa: E402
from visit_assets.lib.llm.llama_cpp_backend import LlamaCppBackend  # noqa: E402
from visit_assets.lib.llm.types import finish_result  # noqa: E402

SYSTEM = (
    "You are a careful visual assistant writing training data for a vision-language model. Answer "
    "the question about the photograph in one or two plain sentences, using only the description."
)
QUESTIONS = ["What is the main subject?", "Describe the colours and lighting.", "What is happening?", "Is any text visible?"]
ANSWER = ("The photograph shows a small red fishing boat moored at a wooden pier in calm water, with "
          "gulls on the railing and low morning light giving the hull a warm glow.")


def build(n: int) -> list[LLMRequest]:
    params = SamplingParams(max_tokens=64)
    return [
        LLMRequest.chat(
            f"Photograph img_{i // 4:06d}.jpg: 640x480 colour, {i % 7 + 1} objects detected, caption "
            f"'a harbour scene number {i // 4} with boats and a pier'.\n\nQuestion: {QUESTIONS[i % 4]}",
            system=SYSTEM, params=params, tag=i,
        )
        for i in range(n)
    ]


class StandIn:
    """Same identity as the GGUF; answers instantly (only used to fill the cache)."""

    kind = "stand-in"

    def __init__(self, identity):
        self.identity = identity

    def complete(self, requests, on_result):
        for i, r in enumerate(requests):
            prompt = sum(len(m["content"]) for m in r.messages) // 4
            on_result(i, finish_result(r, ANSWER, prompt_tokens=prompt, completion_tokens=45, finish_reason="stop", model=self.identity))


class Counting:
    """Wraps a backend and counts the requests that reach it."""

    def __init__(self, inner):
        self.inner, self.kind, self.calls = inner, inner.kind, 0

    @property
    def identity(self):
        return self.inner.identity

    def complete(self, requests, on_result):
        self.calls += len(requests)
        self.inner.complete(requests, on_result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    llama = LlamaCppBackend(n_threads=2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llm_cache.sqlite"
        reqs = build(args.n)
        t0 = time.perf_counter()
        LLMClient(StandIn(llama.identity), LLMCache(path)).generate(reqs)
        fill_s = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        print(f"identity {llama.identity.label()}")
        print(f"populated {args.n} rows in {fill_s:.2f} s ({args.n / fill_s:,.0f} rows/s, one commit per row), {size_mb:.1f} MB with WAL")

        for rnd in range(args.rounds):
            backend = Counting(llama)
            client = LLMClient(backend, LLMCache(path))  # new connection, like a new run
            t0 = time.perf_counter()
            results = client.generate(reqs)
            dt = time.perf_counter() - t0
            assert len(results) == args.n
            s = client.last_stats
            print(
                f"round {rnd + 1}: fully cached re-run of {args.n} requests: {dt:.3f} s wall, backend calls {backend.calls}, "
                f"cache hits {s.cache_hits}, all cached {all(r.cached for r in results)}, model loaded {llama._llm is not None}"
            )
            client.cache.close()

        t0 = time.perf_counter()
        keys = [r.cache_key(llama.identity) for r in reqs]
        t_keys = time.perf_counter() - t0
        cache = LLMCache(path)
        t0 = time.perf_counter()
        found = cache.get_many(keys)
        t_get = time.perf_counter() - t0
        print(f"breakdown: {args.n} cache keys {t_keys:.3f} s, batched lookup ({len(found)} rows, chunks of 900) {t_get:.3f} s")


if __name__ == "__main__":
    main()

"""Fully cached re-run of a large LLM batch: wall time and backend calls (must be 0).

    python bench/llm_cache.py [--n 10000] [--write-docs]

1. Populate a fresh cache file with N finished results under the real SmolLM2 GGUF identity
   (name + sha256), through the normal LLMClient write path (one committed row per result). The
   answers come from a stand-in backend with the same identity that answers instantly with
   realistic ~45-token texts: generating 10,000 real answers would take hours on this CPU, and the
   re-run below never looks at who wrote the rows.
2. Re-run the same N requests in a new client (new SQLite connection) through the real
   `llama_cpp` backend, wrapped to count what reaches it. Expected: 0 backend calls, the model
   never loaded, all N results `cached`.
Requests have the VQA stages' shape: shared system prompt + per-image description + question.
Raw results: bench/results/llm_cache-<date>.json with the machine's facts; --write-docs renders the
section of docs/benchmarks.md between its markers from the newest result file.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import commit, machine, save_result  # noqa: E402

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
            on_result(i, finish_result(r, ANSWER, prompt_tokens=prompt, completion_tokens=45, finish_reason="stop",
                                       model=self.identity))


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


def measure(n: int, rounds: int) -> dict:
    llama = LlamaCppBackend(n_threads=2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llm_cache.sqlite"
        reqs = build(n)
        t0 = time.perf_counter()
        LLMClient(StandIn(llama.identity), LLMCache(path)).generate(reqs)
        fill_s = time.perf_counter() - t0
        size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        print(f"identity {llama.identity.label()}; populated {n} rows in {fill_s:.2f} s, {size_mb:.1f} MB with WAL")
        reruns = []
        for _ in range(rounds):
            backend = Counting(llama)
            client = LLMClient(backend, LLMCache(path))  # new connection, like a new run
            t0 = time.perf_counter()
            results = client.generate(reqs)
            reruns.append({"wall_s": round(time.perf_counter() - t0, 3), "backend_calls": backend.calls,
                           "cache_hits": client.last_stats.cache_hits, "all_cached": all(r.cached for r in results),
                           "model_loaded": llama._llm is not None})
            print(f"fully cached re-run: {reruns[-1]}")
            client.cache.close()
        t0 = time.perf_counter()
        keys = [r.cache_key(llama.identity) for r in reqs]
        keys_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        found = LLMCache(path).get_many(keys)
        lookup_s = time.perf_counter() - t0
    return {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(), "n": n,
            "identity": llama.identity.label(), "fill_s": round(fill_s, 2), "cache_mb": round(size_mb, 1),
            "reruns": reruns, "keys_s": round(keys_s, 3), "lookup_s": round(lookup_s, 3), "found": len(found)}


def render(r: dict) -> str:
    walls = [x["wall_s"] for x in r["reruns"]]
    calls = sorted({x["backend_calls"] for x in r["reruns"]})
    loaded = any(x["model_loaded"] for x in r["reruns"])
    return (f"`.venv/bin/python bench/llm_cache.py --write-docs` — {r['n']:,} answers written into a fresh SQLite cache "
            f"under the real SmolLM2 GGUF's identity (`{r['identity']}`) by an instant stand-in backend through the normal "
            f"write path (generating them with the model would take hours here), then the same requests re-run "
            f"{len(walls)} times, each in a new client, through the real llama.cpp backend wrapped to count what "
            f"reaches it: **{min(walls):.2f}-{max(walls):.2f} s wall, {', '.join(map(str, calls))} backend calls, model "
            f"{'loaded' if loaded else 'never loaded'}** (target under 2 s). Cache keys {r['keys_s']:.2f} s, batched "
            f"lookups {r['lookup_s']:.2f} s. Raw results: `bench/results/llm_cache-{r['date']}.json` ({r['date']}, "
            f"commit {r['commit']}, {r['machine']['cores']} cores).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    result = measure(args.n, args.rounds)
    save_result("llm_cache", result, render, args.write_docs, "LLM response cache: fully cached re-run")


if __name__ == "__main__":
    main()

"""How many LLM requests per second the product can drive through the openai backend, and where the
client's CPU goes per request.

    .venv/bin/python bench/feed_rate.py [--images 300] [--concurrency 64] [--write-docs]

The workload is Instructify's conversation loop (`sample_conversations`: render the prompts, send,
parse the QA pairs, verify each pair, consume facts, build the conversation and attempt rows) on
the embedded sample's grouped records, repeated under new image ids to --images images. Every request
goes through `LLMClient` (cache keys, the SQLite response cache, in-batch dedup) and the openai
backend (urllib3, a thread pool) to the stand-in (a test instrument) served from a separate process
with zero latency: what is measured is the orchestration alone, never a model.

Arms, in one run on the same requests:
  end-to-end   the loop through the backend and a fresh cache: wall time, requests sent, and the
               CPU time of this (client) process; the stand-in's CPU is its own process's
  components   each piece of the client's per-request work timed alone on the requests and replies
               the end-to-end arm recorded: the loop itself (prompt rendering, parsing, verification
               logic, row building; replayed with the recorded replies), cache keys, HTTP (the
               backend's body building, httpx and JSON decoding, no cache), the reply parse, cache
               writes and cache lookups
The target (issue #13): a fleet of 8 GPUs serving an 8B model, about 600 requests/s at the sample's
answer lengths; the ratio says how many such fleets one client core can feed.
Raw results: bench/results/feed_rate-<date>.json with the machine's facts; --write-docs renders the
section of docs/benchmarks.md between its markers from that file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import StandIn, machine, write_section  # noqa: E402

RESULTS = REPO / "bench" / "results"
FLEET_REQUESTS_PER_S = 600  # issue #13: 8 x H100 at ~8,000 output tokens/s each (published vLLM figures)

from visit_assets import settings  # noqa: E402
from visit_assets.lib.instructify.registry import load_registry  # noqa: E402
from visit_assets.lib.instructify.sampling import SamplingConfig, sample_conversations  # noqa: E402
from visit_assets.lib.llm import LLMClient  # noqa: E402
from visit_assets.lib.llm.cache import LLMCache  # noqa: E402
from visit_assets.lib.llm.openai_backend import OpenAIBackend  # noqa: E402
from visit_assets.lib.metadata.dataset import load_dataset, read_layout  # noqa: E402
from visit_assets.lib.metadata.grouping import group_records  # noqa: E402
from visit_assets.lib.standin import STAND_IN_MODEL  # noqa: E402


def records(n_images: int) -> list[dict[str, Any]]:
    """The sample's grouped records, repeated under new image ids (`<id>~<copy>`) to n_images."""
    grouped, _ = group_records(load_dataset(read_layout(settings.sample_dataset()), n_shards=1), None)
    base = grouped.to_dicts()
    out = []
    for i in range(n_images):
        rec = dict(base[i % len(base)])
        rec["image_id"] = f"{rec['image_id']}~{i // len(base)}"
        out.append(rec)
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall s, CPU s of this process: every thread)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def end_to_end(recs: list[dict], url: str, concurrency: int, cache_file: Path, server: StandIn) -> dict:
    backend = OpenAIBackend(url, STAND_IN_MODEL, concurrency=concurrency, max_retries=0)
    client = LLMClient(backend, LLMCache(cache_file))
    calls: list[tuple[list, list]] = []

    def generate(reqs):
        results = client.generate(reqs)
        calls.append((list(reqs), results))
        return results

    s0 = server.cpu_s()
    (convs, attempts), wall, cpu = timed(lambda: sample_conversations(recs, load_registry(), generate, SamplingConfig(),
                                                                      seed=0))
    server_cpu = server.cpu_s() - s0
    client.close()
    stats = client.stats
    return {"images": len(recs), "conversations": len(convs), "attempts": len(attempts), "requests": stats.requests,
            "sent": stats.sent, "tokens_out": stats.tokens_out, "errors": stats.failures.get("error", 0),
            "wall_s": wall, "client_cpu_s": cpu, "server_cpu_s": server_cpu, "calls": calls, "client": client}


def components(e2e: dict, recs: list[dict], url: str, concurrency: int, tmp: Path) -> dict[str, float]:
    """CPU seconds of each piece of the client's work, each on the recorded requests and replies: the
    loop, keys and lookups over every request, HTTP, parsing and cache writes over those sent."""
    calls = e2e["calls"]
    reqs = [r for batch, _ in calls for r in batch]
    results = [r for _, batch in calls for r in batch]
    ident = e2e["client"].identity
    by_key = {res.cache_key: res for res in results}
    # what was sent: one request per answer not from the cache (in-batch duplicates share one)
    sent = {res.cache_key: (req, res) for req, res in zip(reqs, results, strict=True) if not res.cached}
    sent_reqs, sent_results = [q for q, _ in sent.values()], [r for _, r in sent.values()]
    assert len(sent) == e2e["sent"], (len(sent), e2e["sent"])

    def replay(batch):
        return [by_key[r.cache_key(ident)] for r in batch]

    out: dict[str, float] = {}
    _, _, cpu_all = timed(lambda: sample_conversations(recs, load_registry(), replay, SamplingConfig(), seed=0))
    _, _, cpu_keys = timed(lambda: [r.cache_key(ident) for r in reqs])
    out["conversation loop (prompts, parsing, verification logic, rows)"] = cpu_all - cpu_keys  # replay keys itself
    out["cache keys"] = cpu_keys

    backend = OpenAIBackend(url, STAND_IN_MODEL, concurrency=concurrency, max_retries=0)
    _, _, cpu_http = timed(lambda: backend.complete(sent_reqs, lambda i, r: None))
    backend.close()
    bodies = [{"choices": [{"message": {"content": res.text}, "finish_reason": res.finish_reason}],
               "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens}}
              for res in sent_results]
    _, _, cpu_parse = timed(lambda: [backend._parse(r, b) for r, b in zip(sent_reqs, bodies, strict=True)])
    out["HTTP (request body, urllib3, JSON decode, threads)"] = cpu_http - cpu_parse
    out["reply parse (status, structured output)"] = cpu_parse

    out.update(transports(sent_reqs, url, concurrency))
    cache = LLMCache(tmp / "components.sqlite")
    _, _, out["cache writes (one commit per answer)"] = timed(lambda: [cache.put(res.cache_key, res)
                                                                       for res in sent_results])
    _, _, out["cache lookups (batched)"] = timed(lambda: [cache.get_many([r.cache_key(ident) for r in batch])
                                                          for batch, _ in calls])
    out["cache lookups (batched)"] -= cpu_keys
    cache.close()
    return out


TRANSPORTS = ("HTTP alone with urllib3 (the backend's transport)", "HTTP alone with httpx (its transport until 2026-12)")


def transports(reqs: list, url: str, concurrency: int, rounds: int = 3) -> dict[str, float]:
    """The same POSTs and JSON decoding through urllib3 and through httpx, each from a thread pool of
    `concurrency`, in alternating rounds: CPU seconds of the median round of each."""
    import statistics
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    import urllib3

    from visit_assets.lib.llm.openai_backend import openai_body

    bodies = [json.dumps(openai_body(r, STAND_IN_MODEL)).encode() for r in reqs]
    endpoint, headers = url + "/chat/completions", {"Content-Type": "application/json"}
    pool = urllib3.PoolManager(maxsize=concurrency, block=True, retries=False)
    client = httpx.Client(limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
    send = {TRANSPORTS[0]: lambda b: json.loads(pool.request("POST", endpoint, body=b, headers=headers).data),
            TRANSPORTS[1]: lambda b: client.post(endpoint, content=b, headers=headers).json()}
    cpu: dict[str, list[float]] = {name: [] for name in send}
    for _ in range(rounds):
        for name, fn in send.items():
            with ThreadPoolExecutor(concurrency) as ex:
                _, _, c = timed(lambda fn=fn: list(ex.map(fn, bodies)))
            cpu[name].append(c)
    client.close()
    return {name: statistics.median(values) for name, values in cpu.items()}


def run(n_images: int, concurrency: int) -> dict:
    recs = records(n_images)
    with tempfile.TemporaryDirectory() as tmp, StandIn() as server:
        e2e = end_to_end(recs, server.url, concurrency, Path(tmp) / "cache.sqlite", server)
        parts = components(e2e, recs, server.url, concurrency, Path(tmp))
    sent = e2e["sent"]
    per_req = {name: 1000 * s / sent for name, s in parts.items() if name not in TRANSPORTS}
    transport_ms = {name: 1000 * parts[name] / sent for name in TRANSPORTS}
    client_ms = 1000 * e2e["client_cpu_s"] / sent
    e2e = {k: v for k, v in e2e.items() if k not in ("calls", "client")}
    return {
        "end_to_end": {**e2e, "requests_per_s": sent / e2e["wall_s"], "client_cpu_ms_per_request": client_ms,
                       "server_cpu_ms_per_request": 1000 * e2e["server_cpu_s"] / sent},
        "components_cpu_ms_per_request": per_req,
        "components_sum_ms": sum(per_req.values()),
        "transport_cpu_ms_per_request": transport_ms,
        "httpx_over_urllib3": transport_ms[TRANSPORTS[1]] / transport_ms[TRANSPORTS[0]],
        "client_core_capacity_requests_per_s": 1000 / client_ms,
        "fleet_requests_per_s": FLEET_REQUESTS_PER_S,
        "ratio_to_fleet": 1000 / client_ms / FLEET_REQUESTS_PER_S,
    }


def render(result: dict, source: str) -> str:
    e, r = result["end_to_end"], result
    lines = [
        f"Measured by `bench/feed_rate.py` ({source}; {result['machine']['cores']} cores, "
        f"{result['machine']['cpu']}): Instructify's conversation loop on {e['images']} images (the sample's records "
        f"under new ids), {e['sent']:,} requests through `LLMClient` (SQLite cache) and the openai backend "
        f"(concurrency {result['concurrency']}) to the stand-in in its own process, answering at once.",
        "",
        "| | value |", "|---|---|",
        f"| requests sent | {e['sent']:,} ({e['errors']} errors) |",
        f"| wall time | {e['wall_s']:.1f} s |",
        f"| requests/s on this machine (client and stand-in share its cores) | {e['requests_per_s']:.0f} |",
        f"| client CPU per request | {e['client_cpu_ms_per_request']:.2f} ms |",
        f"| stand-in CPU per request (not the product's) | {e['server_cpu_ms_per_request']:.2f} ms |",
        f"| requests/s one client core can feed (1000 / client CPU ms) | {r['client_core_capacity_requests_per_s']:.0f} |",
        f"| ratio to an 8-GPU fleet's ~{r['fleet_requests_per_s']} requests/s | {r['ratio_to_fleet']:.2f}x |",
        "",
        "Client CPU per request, each piece timed alone on the same requests and replies:",
        "",
        "| piece | CPU ms / request |", "|---|---|",
    ]
    for name, ms in sorted(r["components_cpu_ms_per_request"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {ms:.3f} |")
    lines.append(f"| sum of the pieces (end-to-end measured {e['client_cpu_ms_per_request']:.2f}) | "
                 f"{r['components_sum_ms']:.2f} |")
    lines += ["", "The transport, side by side on the same requests (median of 3 alternating rounds):", "",
              "| transport | CPU ms / request |", "|---|---|"]
    lines += [f"| {name} | {ms:.3f} |" for name, ms in r["transport_cpu_ms_per_request"].items()]
    lines.append(f"| httpx / urllib3 | {r['httpx_over_urllib3']:.2f}x |")
    return "\n".join(lines)


def write_docs(path: Path) -> None:
    write_section("feed_rate", render(json.loads(path.read_text()), f"bench/results/{path.name}"),
                  "LLM feed rate: requests/s the orchestration can drive")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=64, help="the openai backend's concurrent requests")
    parser.add_argument("--write-docs", action="store_true",
                        help="render docs/benchmarks.md's section from the newest result")
    parser.add_argument("--docs-only", action="store_true", help="only render the docs from the newest result file")
    args = parser.parse_args()
    if not args.docs_only:
        result = {"date": datetime.date.today().isoformat(), "machine": machine(), "images": args.images,
                  "concurrency": args.concurrency, **run(args.images, args.concurrency)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"feed_rate-{result['date']}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(render(result, str(out.relative_to(REPO))))
    if args.write_docs or args.docs_only:
        write_docs(max(RESULTS.glob("feed_rate-*.json")))


if __name__ == "__main__":
    main()

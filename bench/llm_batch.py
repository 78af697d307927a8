"""LLM batch call vs a one-request-at-a-time loop, through the llama_cpp backend (SmolLM2-135M GGUF).

    python bench/llm_batch.py                  # 16 images x 4 questions = 64 requests, max_tokens 48
    python bench/llm_batch.py --threads 2 --rounds 3   # every core (fine on a quiet machine)

Request shape (what the VQA stages send): a shared system prompt, then per image a description
built from its metadata, then one question. The natural order is question-major (a stage asks
question q of every image), so consecutive requests in the loop share only the system prompt.

Arms, all on the same GGUF and thread count, no cache (NullCache), temperature 0:
  loop          LLMClient.generate([r]) for each request in natural order (one
                create_chat_completion per request; llama-cpp-python reuses the KV prefix shared
                with the previous request, here the system prompt)
  batch-seq     LLMClient.generate(all) with n_parallel=1 (the default): prompt-ordered (image-major), so each
                image's questions also reuse its description's KV; still one sequence at a time
  batch         LLMClient.generate(all) with n_parallel=--parallel (8): continuous batching of 8
                sequences per llama_decode step + shared-prefix KV copies between sequences
Arms run in rotating order over --rounds rounds (other processes share this CPU: rotation spreads
their load over the arms); each arm's best and median round are reported. Raw results:
bench/results/llm_batch-<date>.json with the machine's facts; --write-docs renders the section of
docs/benchmarks.md between its markers from the newest result file.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import commit, machine, save_result  # noqa: E402

from visit_assets.lib.llm import LLMClient, LLMRequest, SamplingParams  # noqa: E402
from visit_assets.lib.llm.llama_cpp_backend import LlamaCppBackend  # noqa: E402

SYSTEM = (
    "You are a careful visual assistant writing training data for a vision-language model. "
    "You are given a description of a photograph assembled from its metadata: size, capture "
    "settings, detected objects and a caption. Answer the question about the photograph in one or "
    "two plain sentences. Do not invent details that the description does not support, and do not "
    "mention the description itself."
)
IMAGES = [
    ("astronaut.jpg", "512x512 colour portrait; an astronaut in a white suit with mission patches stands in front of "
                      "an American flag; studio lighting"),
    ("brick_wall.jpg", "640x480 colour; a weathered red brick wall with pale mortar lines, a rusted drain pipe runs down "
                       "the left edge"),
    ("cameraman.jpg", "256x256 greyscale; a man in a dark coat looks through a camera on a tripod in an open field, "
                      "buildings far behind"),
    ("cell_phase.jpg", "1024x1024 greyscale microscopy, phase contrast; dozens of rounded cells, some dividing, "
                       "on a grey background"),
    ("chelsea_cat.jpg", "451x300 colour; an orange tabby cat with green eyes lies on a wooden floor, looking left"),
    ("coffee.jpg", "600x400 colour; a cup of coffee with latte art on a saucer, a spoon beside it, red table"),
    ("corner_text.jpg", "800x600 colour; a street corner with a shop sign reading 'OPEN 24 HOURS' and two parked bicycles"),
    ("grass.jpg", "512x512 colour texture; dense green grass blades, some dry yellow tips, shot from above"),
    ("gravel.jpg", "512x512 colour texture; grey and brown gravel stones of mixed sizes, a few leaves"),
    ("greek_coins.jpg", "640x427 colour; eight ancient silver and bronze coins on black velvet, profiles of rulers visible"),
    ("hubble_deep_field.jpg", "872x1000 colour astronomy; hundreds of distant galaxies, spirals and ellipticals, on black"),
    ("ihc_tissue.jpg", "512x512 colour microscopy, immunohistochemistry; brown-stained nuclei in blue counterstained "
                       "tissue"),
    ("motion_blurred_clock.jpg", "640x480 colour; a wall clock with motion blur along the hands, time near ten past two"),
    ("retina_fundus.jpg", "1024x1024 colour medical; a retina fundus photograph, optic disc on the right, "
                          "vessels branching"),
    ("rocket_launch.jpg", "480x640 colour; a rocket lifting off from a launch pad at dawn, a bright exhaust plume "
                          "and smoke"),
    ("street_market.jpg", "1280x853 colour; an outdoor market with fruit stalls, awnings, a crowd of shoppers at midday"),
]
QUESTIONS = [
    "What is the main subject of this photograph?",
    "Describe the colours and lighting.",
    "What could this image be used for in a dataset?",
    "Is there any text or writing visible?",
]


def build_requests(n_images: int, n_questions: int, max_tokens: int) -> list[LLMRequest]:
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0)
    return [
        LLMRequest.chat(f"Photograph {name}: {desc}.\n\nQuestion: {q}", system=SYSTEM, params=params, tag=(name, q))
        for q in QUESTIONS[:n_questions]
        for name, desc in IMAGES[:n_images]
    ]


def run_arm(arm: str, backends: dict, reqs: list[LLMRequest]) -> tuple[float, list, dict]:
    client = LLMClient(backends[arm])  # no cache: every arm does the full work
    t0 = time.perf_counter()
    if arm == "loop":
        results = [client.generate([r])[0] for r in reqs]
    else:
        results = client.generate(reqs)
    return time.perf_counter() - t0, results, client.stats.as_dict()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the backend's, half the CPUs)")
    ap.add_argument("--parallel", type=int, default=8, help="n_parallel of the batch arm")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--arms", default="loop,batch-seq,batch")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()

    reqs = build_requests(args.images, args.questions, args.max_tokens)
    seq = LlamaCppBackend(n_threads=args.threads, n_ctx=2048, n_parallel=1)
    par = LlamaCppBackend(n_threads=args.threads, n_ctx=2048, n_parallel=args.parallel)
    backends = {"loop": seq, "batch-seq": seq, "batch": par}
    backend = par
    t0 = time.perf_counter()
    _ = seq.llm
    load_s = time.perf_counter() - t0
    warm = [LLMRequest.chat("warm up", params=SamplingParams(max_tokens=4)),
            LLMRequest.chat("hi", params=SamplingParams(max_tokens=4))]
    LLMClient(seq).generate(warm[:1])
    LLMClient(par).generate(warm)  # builds the parallel context

    arms = args.arms.split(",")
    times: dict[str, list[float]] = {a: [] for a in arms}
    outputs: dict[str, list] = {}
    stats: dict[str, dict] = {}
    for rnd in range(args.rounds):
        for arm in arms[rnd % len(arms):] + arms[: rnd % len(arms)]:
            dt, results, st = run_arm(arm, backends, reqs)
            times[arm].append(dt)
            outputs[arm], stats[arm] = results, st
            print(f"  round {rnd + 1} {arm:14s} {dt:7.2f} s", flush=True)

    result = {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(),
              "model": backend.identity.label(), "load_s": round(load_s, 2), "threads": seq.n_threads,
              "n_parallel": args.parallel, "requests": len(reqs), "images": args.images, "questions": args.questions,
              "max_tokens": args.max_tokens, "rounds": args.rounds, "arms": {}}
    for a in arms:
        result["arms"][a] = {"times_s": [round(t, 3) for t in times[a]],
                             "completion_tokens": sum(r.completion_tokens for r in outputs[a]),
                             "identical_to_loop": (sum(x.text == y.text
                                                       for x, y in zip(outputs["loop"], outputs[a], strict=True))
                                                   if "loop" in outputs and a != "loop" else None)}
    print(render(result))
    save_result("llm_batch", result, render, args.write_docs, "LLM: batch call vs one request at a time")


ARM_TEXT = {"loop": "loop (one `generate` per request)", "batch-seq": "batch, sequential (`n_parallel=1`, default)",
            "batch": "batch, `n_parallel={n}`"}


def render(r: dict) -> str:
    lines = [f"`.venv/bin/python bench/llm_batch.py --write-docs` — {r['model']} through llama.cpp, {r['requests']} "
             f"requests ({r['images']} images x {r['questions']} questions, shared system prompt + description + "
             f"question, `max_tokens` {r['max_tokens']}), cache off, best of {r['rounds']} rounds, {r['threads']} "
             f"llama.cpp thread(s). Raw results: `bench/results/llm_batch-{r['date']}.json` ({r['date']}, commit "
             f"{r['commit']}, {r['machine']['cores']} cores).", "",
             "| arm | best s | req/s | out tok/s | identical to loop |", "| --- | ---: | ---: | ---: | ---: |"]
    best = {a: min(v["times_s"]) for a, v in r["arms"].items()}
    for a, v in r["arms"].items():
        same = "—" if v["identical_to_loop"] is None else f"{v['identical_to_loop']}/{r['requests']}"
        lines.append(f"| {ARM_TEXT.get(a, a).format(n=r['n_parallel'])} | {best[a]:.2f} | {r['requests'] / best[a]:.2f} | "
                     f"{v['completion_tokens'] / best[a]:.1f} | {same} |")
    if "loop" in best and "batch-seq" in best:
        lines += ["", f"Batch / loop: **{best['loop'] / best['batch-seq']:.2f}x** "
                      "(default, measured side by side in one run)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

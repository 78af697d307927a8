"""CLIP image-embedding throughput: `ClipEncoder` vs a bare open_clip loop.

    python bench/clip_throughput.py                         # ViT-B-32, 96 images, batch 32
    python bench/clip_throughput.py --arch ViT-S-32-alt --n 128
    python bench/clip_throughput.py --variants              # also DataLoader / worker / thread variants
    python bench/clip_throughput.py --omp-wait-policy PASSIVE  # torch's OpenMP threads sleep, not spin

Both sides use the same model object (random weights, seeded: no weights ship in any wheel, and
throughput does not depend on the values), the same batch size and the same JPEG files. The bare
loop is the textbook one: for each batch, decode -> preprocess -> encode_image, nothing overlapped.
`ClipEncoder.encode_images` decodes the next batch on a worker while the model runs.

Images: 640x480 photo-like JPEGs (smooth colour field + sensor-like noise + shapes, quality 90),
generated once, seeded, into bench/out/clip_images_v1/ (gitignored).
Rounds are paired: every side runs once per round (direction alternating), each is compared with the
bare loop of the same round, and the ratio is the median over rounds, so noise from other tenants of
the host (which shares these 2 cores) hits both sides alike. max|diff| checks the embeddings agree.
Raw results: bench/results/clip_throughput-<date>.json with the machine's facts; --write-docs renders
the section of docs/benchmarks.md between its markers from the newest result file.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import commit, machine, save_result  # noqa: E402

from visit_assets.lib.models.clip import ClipEncoder  # noqa: E402
from visit_assets.lib.models.image_prep import ImagePrep  # noqa: E402
from visit_assets.lib.models.threads import usable_cpus  # noqa: E402

OUT = HERE / "out" / "clip_images_v1"
SEED = 1234


def generate(n: int, out: Path = OUT, size: tuple[int, int] = (640, 480)) -> list[Path]:
    from PIL import Image, ImageDraw, ImageFilter

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    w, h = size
    for i in range(n):
        p = out / f"img_{i:04d}.jpg"
        paths.append(p)
        if p.exists():
            continue
        rng = np.random.default_rng(SEED + i)
        # low-frequency colour field, upsampled: looks like sky/ground/walls rather than static
        field = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
        base = Image.fromarray(field).resize((w, h), Image.BICUBIC)
        draw = ImageDraw.Draw(base)
        for _ in range(int(rng.integers(4, 12))):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            x1, y1 = x0 + int(rng.integers(30, w // 2)), y0 + int(rng.integers(30, h // 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            else:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
        img = base.filter(ImageFilter.GaussianBlur(1.2))
        noise = rng.normal(0, 8, size=(h, w, 3))
        arr = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(p, "JPEG", quality=90)
    return paths


def bare_loop(model, preprocess, paths: list[Path], batch_size: int) -> np.ndarray:
    import torch
    from PIL import Image

    out = []
    with torch.inference_mode():
        for s in range(0, len(paths), batch_size):
            x = torch.stack([preprocess(Image.open(p)) for p in paths[s : s + batch_size]])
            out.append(model.encode_image(x, normalize=True).numpy())
    return np.concatenate(out)


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="ViT-B-32")
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--variants", action="store_true", help="also time loader/worker/thread variants")
    ap.add_argument("--omp-wait-policy", choices=["ACTIVE", "PASSIVE"], help="set OMP_WAIT_POLICY before torch loads")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()

    if args.omp_wait_policy:
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy  # read when torch (libgomp) loads: before import
    import torch

    paths = generate(args.n)
    enc = ClipEncoder(args.arch, allow_random_init=True, batch_size=args.batch_size)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    print(f"images: {len(paths)} x 640x480 JPEG ({mb:.1f} MB) in {OUT.relative_to(HERE.parent)}")
    print(f"arch: {args.arch}, RANDOM weights (seeded), batch {args.batch_size}, cpus {usable_cpus()}, "
          f"decode workers {enc.num_workers} ({enc.loader}), "
          f"torch threads {torch.get_num_threads()}, torch {torch.__version__}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, loadavg {os.getloadavg()[0]:.2f}")

    model, preprocess = enc.model, enc.preprocess
    print(f"identity: {enc.identity.label()}  (weights={enc.identity.weights})")

    # warm-up: page cache, allocator, first-call overheads
    bare_loop(model, preprocess, paths[: args.batch_size], args.batch_size)
    enc.encode_images(paths[: args.batch_size])

    bare_name, enc_name = "bare open_clip loop", "ClipEncoder (default)"
    sides = {bare_name: lambda: bare_loop(model, preprocess, paths, args.batch_size),
             enc_name: lambda: enc.encode_images(paths)[0]}
    if args.variants:
        # (label, ClipEncoder kwargs, split the preprocess as on a GPU: PIL part in the worker, /255 +
        # Normalize batched on the main thread)
        variants = [("threads, 1 worker", {"num_workers": 1}, False),
                    ("threads, 1 worker, torch_threads=1", {"num_workers": 1, "torch_threads": 1}, False),
                    ("threads, 2 workers, split preprocess (GPU mode)", {"num_workers": 2}, True),
                    ("DataLoader, 1 worker process", {"loader": "dataloader", "num_workers": 1}, False),
                    ("DataLoader, 2 worker processes", {"loader": "dataloader", "num_workers": 2}, False),
                    ("no overlap (num_workers=0)", {"num_workers": 0}, False)]
        for label, kwargs, split in variants:
            v = ClipEncoder(args.arch, allow_random_init=True, batch_size=args.batch_size, **kwargs)
            v._model, v._preprocess, v._tokenizer = model, preprocess, enc.tokenizer  # share the same weights
            if split:
                v._prep = ImagePrep(preprocess, split=True)
            sides[f"ClipEncoder {label}"] = lambda v=v: v.encode_images(paths)[0]

    # Paired rounds: each round runs every side once, in an order that alternates direction, and
    # each side is compared with the bare loop *of the same round* (noise from other tenants on the
    # host hits neighbouring runs alike). The ratio reported is the median over rounds.
    times: dict[str, list[float]] = {k: [] for k in sides}
    results: dict[str, np.ndarray] = {}
    names = list(sides)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            dt, res = timed(sides[name])
            times[name].append(dt)
            results[name] = res  # type: ignore[assignment]

    ref = results[bare_name]
    n = len(paths)
    print(f"\n{'side':<58} {'median img/s':>12} {'best img/s':>10} {'ratio':>6} {'max|diff|':>10}")
    for name, ts in times.items():
        ratios = [tb / t for tb, t in zip(times[bare_name], ts, strict=True)]  # >1: faster than bare
        diff = float(np.max(np.abs(results[name] - ref)))
        print(f"{name:<58} {n / statistics.median(ts):>12.2f} {n / min(ts):>10.2f} "
              f"{statistics.median(ratios):>6.2f} {diff:>10.2e}")
    ratio = statistics.median(tb / t for tb, t in zip(times[bare_name], times[enc_name], strict=True))
    print(f"\nClipEncoder / bare (median of {args.rounds} paired rounds) = {ratio:.2f}  (target >= 0.9); "
          f"loadavg {os.getloadavg()[0]:.2f}")
    result = {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(), "arch": args.arch,
              "weights": enc.identity.weights, "images": n, "batch_size": args.batch_size, "rounds": args.rounds,
              "torch": torch.__version__, "decode_workers": enc.num_workers, "bare": bare_name, "encoder": enc_name,
              "sides": {name: {"times_s": [round(t, 4) for t in ts],
                               "max_abs_diff": float(np.max(np.abs(results[name] - ref)))} for name, ts in times.items()}}
    save_result("clip_throughput", result, render, args.write_docs, "CLIP image embeddings: resource vs bare open_clip loop")


def render(r: dict) -> str:
    bare = r["sides"][r["bare"]]["times_s"]
    lines = [f"`.venv/bin/python bench/clip_throughput.py --write-docs` — {r['arch']} (random seeded weights: the real "
             f"code path; no CLIP weights ship in any wheel), {r['images']} photo-like 640x480 JPEGs, batch "
             f"{r['batch_size']}, median of {r['rounds']} paired rounds. Raw results: "
             f"`bench/results/clip_throughput-{r['date']}.json` ({r['date']}, commit {r['commit']}, "
             f"{r['machine']['cores']} cores, torch {r['torch']}).", "",
             "| side | median img/s | ratio to the bare loop (median of paired rounds) | max abs diff |",
             "| --- | ---: | ---: | ---: |"]
    for name, v in r["sides"].items():
        ratio = statistics.median(tb / t for tb, t in zip(bare, v["times_s"], strict=True))
        lines.append(f"| {name} | {r['images'] / statistics.median(v['times_s']):.2f} | {ratio:.2f} | "
                     f"{v['max_abs_diff']:.1e} |")
    enc = statistics.median(tb / t for tb, t in zip(bare, r["sides"][r["encoder"]]["times_s"], strict=True))
    lines += ["", f"ClipEncoder / bare loop: **{enc:.2f}** (target >= 0.9)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

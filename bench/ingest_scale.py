"""Ingest at the real size of two of the loaders' largest public files, against a plain json.load.

    python bench/ingest_scale.py [--write-docs] [--only vqav2|visual_genome]

Two synthetic sets, generated once (seeded) into bench/out/ingest_scale_v1/ (gitignored), with the
real releases' counts and layout:
  * vqav2: VQAv2 train2014 (443,757 questions over 82,783 images, ten answers each):
    v2_OpenEnded_mscoco_train2014_questions.json + v2_mscoco_train2014_annotations.json;
  * visual_genome: Visual Genome v1.2's region descriptions (108,077 images, 5,408,689 regions):
    region_descriptions.json + image_data.json.
Each side runs in a fresh process (peak RSS is that child's own):
  * baseline: json.load of the files into per-image dicts (QA pairs / region phrases with boxes);
    no validation, nothing written;
  * full: the product's ingest as its assets run it (lib/metadata/pipeline.py): every record
    validated into source_records (Parquet), then each of 16 shards grouped with QC and written.
Raw results: bench/results/ingest_scale-<date>.json; --write-docs renders docs/benchmarks.md's section.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import REPO, commit, machine, run_child, save_result  # noqa: E402

OUT = HERE / "out" / "ingest_scale_v1"
SHARDS = 16
# the real releases' counts (VQAv2 train2014; Visual Genome v1.2 region descriptions)
VQA_QUESTIONS, VQA_IMAGES = 443_757, 82_783
VG_IMAGES, VG_REGIONS = 108_077, 5_408_689
_WORDS = ("man woman dog cat car tree sign table window shirt plate bus street building sky grass water "
          "red blue white black green large small wooden old two three the a on in near of with").split()
_ANSWERS = ("yes no 2 1 3 white red blue black green dog cat pizza frisbee tennis left right nothing").split()


def _phrase(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(lo, hi)))


def _write_vqav2(folder: Path, rng: random.Random) -> None:
    images = rng.sample(range(1, 581_930), VQA_IMAGES)
    questions, annotations = [], []
    for qid in range(VQA_QUESTIONS):
        img = images[qid % VQA_IMAGES]
        question_id = img * 1000 + qid // VQA_IMAGES
        questions.append({"image_id": img, "question": _phrase(rng, 4, 9).capitalize() + "?", "question_id": question_id})
        answers = [{"answer": rng.choice(_ANSWERS), "answer_confidence": rng.choice(("yes", "maybe")), "answer_id": k + 1}
                   for k in range(10)]
        annotations.append({"question_type": "what is", "multiple_choice_answer": answers[0]["answer"],
                            "answers": answers, "image_id": img, "answer_type": "other", "question_id": question_id})
    head = {"info": {"description": "synthetic"}, "license": {"name": "none"}, "data_subtype": "train2014"}
    (folder / "v2_OpenEnded_mscoco_train2014_questions.json").write_text(json.dumps(
        {**head, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions}, separators=(",", ":")))
    (folder / "v2_mscoco_train2014_annotations.json").write_text(json.dumps(
        {**head, "data_type": "mscoco", "annotations": annotations}, separators=(",", ":")))


def _write_visual_genome(folder: Path, rng: random.Random) -> None:
    sizes = [(800, rng.randint(400, 800)) for _ in range(VG_IMAGES)]
    (folder / "image_data.json").write_text(json.dumps([
        {"width": w, "url": f"https://cs.stanford.edu/people/rak248/VG_100K/{i + 1}.jpg", "height": h,
         "image_id": i + 1, "coco_id": None, "flickr_id": None} for i, (w, h) in enumerate(sizes)], separators=(",", ":")))
    per_image = [VG_REGIONS // VG_IMAGES + (i < VG_REGIONS % VG_IMAGES) for i in range(VG_IMAGES)]
    region_id = 0
    with open(folder / "region_descriptions.json", "w") as f:  # streamed: the file is ~700 MB
        f.write("[")
        for i, n in enumerate(per_image):
            w, h = sizes[i]
            regions = []
            for _ in range(n):
                region_id += 1
                x, y = rng.randint(0, w - 20), rng.randint(0, h - 20)
                regions.append({"region_id": region_id, "width": rng.randint(10, w - x), "height": rng.randint(10, h - y),
                                "image_id": i + 1, "phrase": _phrase(rng, 2, 7), "y": y, "x": x})
            f.write(("," if i else "") + json.dumps({"regions": regions, "id": i + 1}, separators=(",", ":")))
        f.write("]")


SETS = {"vqav2": _write_vqav2, "visual_genome": _write_visual_genome}


def generate(name: str) -> Path:
    """The set's dataset folder (its files and nothing else: every file in it is a source); its
    marker beside it holds the file sizes once the set is complete."""
    folder, done = OUT / name, OUT / f"{name}.done.json"
    if not done.exists():
        print(f"generating {folder} (once) ...", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        SETS[name](folder, random.Random(2014))
        done.write_text(json.dumps({p.name: p.stat().st_size for p in folder.iterdir()}))
    return folder


# -- the two sides (each in its own process) -------------------------------------------------------

def baseline_vqav2(meta: Path) -> dict:
    per_image: dict[int, list] = {}
    with open(meta / "v2_OpenEnded_mscoco_train2014_questions.json") as f:
        questions = {q["question_id"]: q for q in json.load(f)["questions"]}
    with open(meta / "v2_mscoco_train2014_annotations.json") as f:
        for a in json.load(f)["annotations"]:
            q = questions[a["question_id"]]
            per_image.setdefault(q["image_id"], []).append((q["question"], a["multiple_choice_answer"]))
    return {"images": len(per_image), "qa": sum(map(len, per_image.values()))}


def baseline_visual_genome(meta: Path) -> dict:
    with open(meta / "image_data.json") as f:
        images = {im["image_id"]: (im["width"], im["height"]) for im in json.load(f)}
    per_image: dict[int, list] = {}
    with open(meta / "region_descriptions.json") as f:
        for entry in json.load(f):
            per_image[entry["id"]] = [(r["phrase"], r["x"], r["y"], r["width"], r["height"]) for r in entry["regions"]]
    return {"images": len(images), "regions": sum(map(len, per_image.values()))}


def full(folder: Path, workdir: Path) -> dict:
    """The product's ingest as the assets run it (the same functions as defs/ingest/assets.py)."""
    import polars as pl

    from visit_assets.lib.metadata.dataset import read_layout
    from visit_assets.lib.metadata.grouping import QCConfig
    from visit_assets.lib.metadata.pipeline import group_shard, ingest_records
    from visit_assets.lib.storage import ParquetStore

    store = ParquetStore(workdir / "store")
    t0 = time.perf_counter()
    layout = read_layout(folder)
    records, version = ingest_records(layout, SHARDS, "bench")
    counts = {f"n_{k}": int(v) for k, v in records.group_by("kind").len().iter_rows()}
    store.write("source_records", layout.name, version, records)
    n_records, rejected_at_load = records.height, int(records["reject_reason"].is_not_null().sum())
    del records
    t1 = time.perf_counter()
    images = rejects = 0
    for shard in range(SHARDS):
        part = store.scan("source_records", layout.name).filter(pl.col("shard") == shard).collect()
        grouped, rejected = group_shard(part, None, QCConfig(), layout.name, version, "bench")
        store.write("grouped_metadata", layout.name, version, grouped, shard)
        store.write("metadata_rejects", layout.name, version, rejected, shard)
        images, rejects = images + grouped.height, rejects + rejected.height
    return {"ingest_s": round(t1 - t0, 2), "group_s": round(time.perf_counter() - t1, 2), "records": n_records,
            "rejected_at_load": rejected_at_load, "images": images, "rejects": rejects, **counts}


def _child(side: str, name: str, folder: Path, workdir: Path) -> None:
    sys.path.insert(0, str(REPO))
    t0 = time.perf_counter()
    result = full(folder, workdir) if side == "full" else globals()[f"baseline_{name}"](folder)
    result["work_s"] = round(time.perf_counter() - t0, 2)
    print("RESULT " + json.dumps(result), flush=True)


def measure(name: str) -> dict:
    folder = generate(name)
    rows = {}
    for side in ("baseline", "full"):
        work = OUT / f"work_{name}_{side}"
        work.mkdir(parents=True, exist_ok=True)
        rows[side] = run_child([__file__, "_side", side, name, str(folder), str(work)], f"{name} {side}")
        print(f"{name:>14} {side:>8}: {rows[side]['wall_s']:8.2f} s  {rows[side]['peak_rss_mb']:8.0f} MB  "
              + " ".join(f"{k}={v}" for k, v in rows[side].items() if k not in ("wall_s", "peak_rss_mb")), flush=True)
    b, o = rows["baseline"], rows["full"]
    print(f"{name:>14} baseline / ours: wall {b['wall_s'] / o['wall_s']:.2f}x, "
          f"peak RSS {b['peak_rss_mb'] / o['peak_rss_mb']:.2f}x")
    return {"set": name, "files_bytes": json.loads((OUT / f"{name}.done.json").read_text()), **rows}


def render(r: dict) -> str:
    lines = [f"Raw results: `bench/results/ingest_scale-{r['date']}.json` ({r['date']}, commit {r['commit']}, "
             f"{r['machine']['cores']} cores), both sides of each set in one run.", "",
             "| set | files MB | baseline (`json.load`) s / MB | ours (ingest + grouping + QC + Parquet) s / MB | "
             "ratio: faster / less memory |", "| --- | ---: | ---: | ---: | ---: |"]
    for s in r["sets"]:
        b, o = s["baseline"], s["full"]
        mb = sum(s["files_bytes"].values()) / 2**20
        lines.append(f"| {s['set']} | {mb:,.0f} | {b['wall_s']:.1f} / {b['peak_rss_mb']:,.0f} | "
                     f"{o['wall_s']:.1f} / {o['peak_rss_mb']:,.0f} | "
                     f"**{b['wall_s'] / o['wall_s']:.2f}x / {b['peak_rss_mb'] / o['peak_rss_mb']:.2f}x** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_side"]:
        _child(argv[1], argv[2], Path(argv[3]), Path(argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=sorted(SETS))
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)
    sets = [measure(name) for name in ([args.only] if args.only else sorted(SETS, reverse=True))]
    result = {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(), "sets": sets}
    save_result("ingest_scale", result, render, args.write_docs and not args.only,
                "Metadata ingest at the size of VQAv2 and Visual Genome")


if __name__ == "__main__":
    main()

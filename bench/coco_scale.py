"""COCO-scale benchmark of the COCO metadata loader.

    python bench/coco_scale.py                    # = --stage loader
    python bench/coco_scale.py --stage loader     # baseline vs load_coco + Parquet
    python bench/coco_scale.py --full             # baseline vs the whole pipeline (load -> group + QC -> Parquet)
    python bench/coco_scale.py generate           # only (re)build the synthetic set

The synthetic set is written once (seeded, so byte-identical every time) into
bench/out/coco_scale_v1/ (gitignored): captions.json and instances.json with the real COCO 2017
train counts (118,287 images, 591,753 captions, 860,001 instances with polygon segmentations), keys
in the real files' order and written compactly like them. instances.json is ~450 MB, like the real
instances_train2017.json.

Every measured stage runs in its own fresh subprocess; the parent reads that child's own rusage
(os.wait4), so peak RSS (ru_maxrss) is exact per stage and stages never contaminate each other.
Raw results: bench/results/coco_scale-<stage>-<date>.json with the machine's facts; --write-docs
renders the section of docs/benchmarks.md between its markers from the newest full-stage result.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import time
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
SET_VERSION = "v1"  # bump when the generator's output changes, so the cache is rebuilt

N_IMAGES = 118_287
N_CAPTIONS = 591_753
N_INSTANCES = 860_001
SEED = 2017

# --------------------------------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------------------------------

# The 80 COCO object categories (id, supercategory, name); ids have gaps like the real ones.
_CATEGORY_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant - "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe - "
    "backpack umbrella - - handbag tie suitcase frisbee skis snowboard sports_ball kite "
    "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle - wine_glass cup fork "
    "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair "
    "couch potted_plant bed - dining_table - - toilet - tv laptop mouse remote keyboard cell_phone "
    "microwave oven toaster sink refrigerator - book clock vase scissors teddy_bear hair_drier "
    "toothbrush"
).split()
_SUPER = {
    "person": "person", "bicycle": "vehicle", "car": "vehicle", "motorcycle": "vehicle",
    "airplane": "vehicle", "bus": "vehicle", "train": "vehicle", "truck": "vehicle", "boat": "vehicle",
}
CATEGORIES = [
    {"supercategory": _SUPER.get(n, "object"), "id": i + 1, "name": n.replace("_", " ")}
    for i, n in enumerate(_CATEGORY_NAMES)
    if n != "-"
]
assert len(CATEGORIES) == 80

_WORDS = {
    "det": ["A", "The", "Two", "Three", "Several", "Some", "A group of", "A couple of"],
    "adj": ["small", "large", "white", "black", "red", "young", "old", "wooden", "brown", "blue",
            "green", "tall", "busy", "empty", "little", "happy"],
    "noun": [c["name"] for c in CATEGORIES] + ["man", "woman", "child", "table", "street", "room",
                                               "kitchen", "field", "beach", "plate", "building"],
    "verb": ["sitting on", "standing next to", "parked near", "walking down", "laying on",
             "holding", "looking at", "riding", "in front of", "on top of", "next to", "under"],
    "place": ["a table", "the street", "a field", "a kitchen counter", "the beach", "a city street",
              "a grassy field", "a living room", "the snow", "a wooden bench", "the water", "a plate"],
}


def _caption(rng: random.Random) -> str:
    w = _WORDS
    text = (f"{rng.choice(w['det'])} {rng.choice(w['adj'])} {rng.choice(w['noun'])} "
            f"{rng.choice(w['verb'])} {rng.choice(w['place'])}")
    if rng.random() < 0.35:
        text += f" with {rng.choice(w['adj'])} {rng.choice(w['noun'])}"
    return text + ("." if rng.random() < 0.8 else "")


def _f2(v: float) -> str:
    """A coordinate as COCO writes it: at most two decimals, no trailing zeros."""
    s = f"{v:.2f}".rstrip("0")
    return s[:-1] if s.endswith(".") else s


def _images(rng: random.Random) -> list[dict]:
    ids = rng.sample(range(1, 581_930), N_IMAGES)
    out = []
    for iid in ids:
        if rng.random() < 0.7:
            w, h = 640, rng.randint(240, 640)
        else:
            w, h = rng.randint(240, 640), 640
        farm = rng.randint(1, 9)
        out.append({
            "license": rng.randint(1, 8),
            "file_name": f"{iid:012d}.jpg",
            "coco_url": f"http://images.cocodataset.org/train2017/{iid:012d}.jpg",
            "height": h,
            "width": w,
            "date_captured": f"2013-{rng.randint(11, 12)}-{rng.randint(10, 28)} "
                             f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
            "flickr_url": f"http://farm{farm}.staticflickr.com/{rng.randint(1000, 9999)}/"
                          f"{rng.randint(10**9, 10**10 - 1)}_{rng.getrandbits(40):010x}_z.jpg",
            "id": iid,
        })
    return out


def _header() -> str:
    info = {"description": "Synthetic COCO-scale benchmark set", "url": "http://example.invalid",
            "version": "1.0", "year": 2017, "contributor": "visit-assets bench",
            "date_created": "2017/09/01"}
    licenses = [{"url": f"http://example.invalid/license/{i}", "id": i, "name": f"License {i}"}
                for i in range(1, 9)]
    return ('{"info":' + json.dumps(info, separators=(",", ":"))
            + ',"licenses":' + json.dumps(licenses, separators=(",", ":")))


def _write_list(f, key: str, items, first: bool = False) -> None:
    f.write(("" if first else ",") + f'"{key}":[')
    sep = ""
    for chunk in items:  # items yields already-encoded JSON strings
        f.write(sep + chunk)
        sep = ","
    f.write("]")


def _instance(rng: random.Random, ann_id: int, img: dict) -> str:
    iw, ih = img["width"], img["height"]
    bw = max(1.0, rng.uniform(0.02, 0.7) ** 1.5 * iw)
    bh = max(1.0, rng.uniform(0.02, 0.7) ** 1.5 * ih)
    bx, by = rng.uniform(0, iw - bw), rng.uniform(0, ih - bh)
    cat = rng.choice(CATEGORIES)["id"]
    crowd = rng.random() < 0.011
    if crowd:  # run-length-encoded mask, as COCO stores crowd regions
        n = rng.randint(40, 400)
        counts = ",".join(str(rng.randint(1, 600)) for _ in range(n))
        seg = f'{{"counts":[{counts}],"size":[{ih},{iw}]}}'
    else:  # 1-3 polygons; COCO's polygons have ~10-100 vertices, on average ~25 per annotation
        polys = []
        for _ in range(1 if rng.random() < 0.88 else rng.randint(2, 3)):
            n = max(4, int(rng.lognormvariate(3.0, 0.55)))
            r = rng.random
            polys.append("[" + ",".join(f"{_f2(bx + r() * bw)},{_f2(by + r() * bh)}"
                                        for _ in range(n)) + "]")
        seg = "[" + ",".join(polys) + "]"
    area = bw * bh * rng.uniform(0.35, 0.85)
    return (f'{{"segmentation":{seg},"area":{area!r},"iscrowd":{int(crowd)},"image_id":{img["id"]},'
            f'"bbox":[{_f2(bx)},{_f2(by)},{_f2(bw)},{_f2(bh)}],"category_id":{cat},"id":{ann_id}}}')


def generate(folder: Path, *, force: bool = False) -> Path:
    """Write captions.json and instances.json into `folder` once; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "DONE"
    if done.exists() and not force:
        return folder
    t0 = time.perf_counter()
    rng = random.Random(SEED)
    images = _images(rng)
    enc = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    image_chunks = [enc(im) for im in images]

    # captions: five per image, 318 images get a sixth; ids unique, file order shuffled like COCO's
    cap_rng = random.Random(SEED + 1)
    owners = [im["id"] for im in images for _ in range(5)]
    owners += [im["id"] for im in cap_rng.sample(images, N_CAPTIONS - len(owners))]
    cap_rng.shuffle(owners)
    cap_ids = cap_rng.sample(range(1, 830_000), N_CAPTIONS)
    tmp = folder / "captions.json.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(_header())
        _write_list(f, "images", image_chunks)
        _write_list(f, "annotations", (enc({"image_id": o, "id": i, "caption": _caption(cap_rng)})
                                       for o, i in zip(owners, cap_ids, strict=True)))
        f.write("}")
    tmp.replace(folder / "captions.json")

    # instances: ~7.3 per image, ~1% of images without any, crowd regions as RLE
    ins_rng = random.Random(SEED + 2)
    weights = [0.0 if ins_rng.random() < 0.009 else ins_rng.expovariate(1.0) for _ in images]
    owners_i = ins_rng.choices(images, weights=weights, k=N_INSTANCES)
    tmp = folder / "instances.json.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(_header())
        _write_list(f, "images", image_chunks)
        _write_list(f, "annotations", (_instance(ins_rng, k + 1, im) for k, im in enumerate(owners_i)))
        f.write(',"categories":' + json.dumps(CATEGORIES, separators=(",", ":")) + "}")
    tmp.replace(folder / "instances.json")

    sizes = {p.name: p.stat().st_size for p in (folder / "captions.json", folder / "instances.json")}
    done.write_text(json.dumps({"version": SET_VERSION, "seed": SEED, "sizes": sizes,
                                "seconds": round(time.perf_counter() - t0, 1)}))
    return folder


# --------------------------------------------------------------------------------------------------
# measured stages (each runs in a fresh child process: `coco_scale.py _stage NAME FOLDER WORKDIR`)
# --------------------------------------------------------------------------------------------------


def stage_baseline(folder: Path, workdir: Path) -> dict:
    """The naive way: json.load both files, build per-image dicts. No QC, nothing written."""
    per_image: dict[int, dict] = {}
    with open(folder / "captions.json", encoding="utf-8") as f:
        caps = json.load(f)
    for im in caps["images"]:
        per_image[im["id"]] = {"file_name": im["file_name"], "width": im["width"],
                               "height": im["height"], "captions": [], "boxes": []}
    for a in caps["annotations"]:
        per_image[a["image_id"]]["captions"].append(a["caption"])
    del caps
    with open(folder / "instances.json", encoding="utf-8") as f:
        inst = json.load(f)
    names = {c["id"]: c["name"] for c in inst["categories"]}
    for a in inst["annotations"]:
        per_image[a["image_id"]]["boxes"].append((names[a["category_id"]], a["bbox"]))
    del inst
    return {"images": len(per_image),
            "captions": sum(len(v["captions"]) for v in per_image.values()),
            "boxes": sum(len(v["boxes"]) for v in per_image.values())}


def stage_loader(folder: Path, workdir: Path) -> dict:
    """load_coco on both files, then write the source records to Parquet."""
    import polars as pl

    from visit_assets.lib.metadata.loaders.coco import load_coco

    t0 = time.perf_counter()
    records = pl.concat([load_coco(folder / n, n) for n in ("captions.json", "instances.json")])
    t1 = time.perf_counter()
    out = workdir / "source_records.parquet"
    records.write_parquet(out)
    counts = dict(records.group_by("kind").len().iter_rows())
    return {"load_s": round(t1 - t0, 2), "write_s": round(time.perf_counter() - t1, 2),
            "rows": records.height, "rejects": records["reject_reason"].is_not_null().sum(),
            **{f"n_{k}": v for k, v in sorted(counts.items())},
            "parquet_mb": round(out.stat().st_size / 2**20, 1)}


def stage_full(folder: Path, workdir: Path) -> dict:
    """The product's ingest as its assets run it: source_records, then each shard grouped + QC'd."""
    # Same functions as visit_assets/defs/ingest/assets.py; only the Dagster wrapping is left out.
    from visit_assets.lib.metadata.dataset import read_layout
    from visit_assets.lib.metadata.grouping import QCConfig
    from visit_assets.lib.metadata.pipeline import group_shard, ingest_records
    from visit_assets.lib.storage import ParquetStore

    n_shards = 16
    store = ParquetStore(workdir / "store")
    t0 = time.perf_counter()
    layout = read_layout(folder)
    records, version = ingest_records(layout, n_shards, "bench")
    n_records = records.height
    store.write("source_records", layout.name, version, records)
    del records
    t1 = time.perf_counter()
    images = rejects = 0
    for shard in range(n_shards):  # what the dataset x shard partitions do, one after another
        part = store.scan("source_records", layout.name).filter(pl.col("shard") == shard).collect()
        grouped, rejected = group_shard(part, None, QCConfig(), layout.name, version, "bench")
        store.write("grouped_metadata", layout.name, version, grouped, shard)
        store.write("metadata_rejects", layout.name, version, rejected, shard)
        images, rejects = images + grouped.height, rejects + rejected.height
    return {"ingest_s": round(t1 - t0, 2), "group_s": round(time.perf_counter() - t1, 2),
            "records": n_records, "images": images, "rejects": rejects}


STAGES = {"baseline": stage_baseline, "loader": stage_loader, "full": stage_full}


def _child(name: str, folder: Path, workdir: Path) -> None:
    sys.path.insert(0, str(REPO))
    t0 = time.perf_counter()
    result = STAGES[name](folder, workdir)
    result["work_s"] = round(time.perf_counter() - t0, 2)
    print("RESULT " + json.dumps(result, default=int), flush=True)


def run_stage(name: str, folder: Path, workdir: Path) -> dict:
    """Run one stage in a fresh interpreter; wall time and the child's own peak RSS."""
    sys.path.insert(0, str(HERE))
    from common import run_child

    workdir.mkdir(parents=True, exist_ok=True)
    return {"stage": name, **run_child([__file__, "_stage", name, str(folder), str(workdir)], f"stage {name}")}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_stage"]:
        _child(argv[1], Path(argv[2]), Path(argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=["run", "generate"], default="run")
    p.add_argument("--stage", choices=["loader", "full"], default="full")
    p.add_argument("--full", action="store_true", help="same as --stage full")
    p.add_argument("--out", type=Path, default=OUT, help="cache folder (default bench/out)")
    p.add_argument("--regen", action="store_true", help="rebuild the synthetic set")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--write-docs", action="store_true")
    args = p.parse_args(argv)

    folder = args.out / f"coco_scale_{SET_VERSION}"
    if args.regen or not (folder / "DONE").exists():
        print(f"generating the synthetic COCO-scale set in {folder} (once) ...", flush=True)
    generate(folder, force=args.regen)
    meta = json.loads((folder / "DONE").read_text())
    print("set: " + ", ".join(f"{k} {v / 2**20:.0f} MB" for k, v in meta["sizes"].items())
          + f"; {N_IMAGES:,} images, {N_CAPTIONS:,} captions, {N_INSTANCES:,} instances")
    if args.command == "generate":
        return

    ours = "full" if args.full else args.stage
    rows = []
    if not args.skip_baseline:
        rows.append(run_stage("baseline", folder, args.out / "work_baseline"))
    rows.append(run_stage(ours, folder, args.out / f"work_{ours}"))
    print(f"\n{'stage':<10} {'wall s':>8} {'work s':>8} {'peak RSS MB':>12}  details")
    for r in rows:
        details = {k: v for k, v in r.items() if k not in ("stage", "wall_s", "work_s", "peak_rss_mb")}
        print(f"{r['stage']:<10} {r['wall_s']:>8.2f} {r['work_s']:>8.2f} {r['peak_rss_mb']:>12.0f}  "
              + " ".join(f"{k}={v}" for k, v in details.items()))
    if len(rows) == 2:
        b, o = rows
        print(f"\nbaseline / {o['stage']}:  wall {b['wall_s'] / o['wall_s']:.2f}x   "
              f"peak RSS {b['peak_rss_mb'] / o['peak_rss_mb']:.2f}x")
    sys.path.insert(0, str(HERE))
    from common import commit, machine, save_result

    result = {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(), "stage": ours,
              "set": meta, "rows": rows}
    if ours == "full":  # the docs' section shows the full pipeline against the baseline
        save_result("coco_scale-full", result, render, args.write_docs, "Metadata ingest at COCO scale", "coco_scale")
    else:
        save_result(f"coco_scale-{ours}", result, render, False, "")


def render(r: dict) -> str:
    by = {x["stage"]: x for x in r["rows"]}
    b, o = by["baseline"], by["full"]
    return "\n".join([
        f"Raw results: `bench/results/coco_scale-full-{r['date']}.json` ({r['date']}, commit {r['commit']}, "
        f"{r['machine']['cores']} cores), both sides in one run.", "",
        "| side | wall s | peak RSS MB |", "| --- | ---: | ---: |",
        f"| baseline (`json.load`) | {b['wall_s']:.2f} | {b['peak_rss_mb']:,.0f} |",
        f"| full ingest + grouping + QC + Parquet | {o['wall_s']:.2f} | {o['peak_rss_mb']:,.0f} |",
        f"| **ratio baseline / ours** | **{b['wall_s'] / o['wall_s']:.2f}x faster** | "
        f"**{b['peak_rss_mb'] / o['peak_rss_mb']:.2f}x less memory** |"])


if __name__ == "__main__":
    main()

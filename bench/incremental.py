"""Incremental regeneration: what re-runs, and what reaches the LLM, after a small edit.

    .venv/bin/python bench/incremental.py [--write-docs]     # every LLM role on the stand-in (default)
    .venv/bin/python bench/incremental.py --backend llama_cpp # the packaged SmolLM2-135M, ~8 min
    .venv/bin/python bench/incremental.py --backend echo      # model-free echo backend

On a fresh VISIT_HOME holding a copy of the embedded sample, the whole graph runs as
`visit-assets run-sample` runs it (`runner.run_dataset` with the sample's LAPTOP knobs), then again
after each of three edits, one after the other:

  captions  one caption of each of 2 images (the same shard) rewritten in the COCO captions file
  seed      one seed instruction's text changed, in a copy of the seeds file
  prompt    one of the Instructify `complex_reasoning` prompt's reasoning angles reworded, and the
            prompt bumped to version 2, in a copy
            of the packaged prompt files; the conversation stage's code version (which hashes its
            prompt files) is recomputed and the definitions rebuilt, as a code-location restart
            after editing the packaged file would

Neither the seeds file nor the prompt folder can be pointed elsewhere by configuration (no setting
or env var): the copies are put in place by setting the module globals `seeds.DEFAULT_SEEDS_PATH`,
`registry.DEFAULT_DIR` and `code_version.PACKAGE` in this process (restored afterwards).

`run_dataset` executes every partition each time (a UI "materialize all"); the LLM cache makes
the unchanged ones cheap. Per step: asset partitions with a new data version (what Dagster
automation would regenerate), LLM requests asked, answered from the cache and sent (cache misses;
from each materialization's llm_* metadata, checked against the new rows of the cache file), the
sent requests by what asked for them and which images' rows name them, and wall time.

The stand-in (a test instrument: it answers competently, in its own process, no faults) is the
default because its answers parse, so the MM-Instruct side (clusters, matches, answers) takes part;
the echo backend's do not. Raw results: bench/results/incremental-<backend>-<date>.json with the
machine's facts; --write-docs renders docs/benchmarks.md's section from the newest one.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"

DATASET = "sample"
PER_IMAGE_LLM_ASSETS = ("image_facts", "generated_instructions", "generated_conversations", "filtered_conversations")


# --- the edits -----------------------------------------------------------------------------------

def caption_file(home: Path) -> Path:
    return home / "datasets" / DATASET / "annotations" / "captions.json"


def pick_images(home: Path, n: int = 2) -> list[str]:
    """`n` image keys that share a shard (so the other shards are untouched), with captions."""
    from visit_assets import settings
    from visit_assets.lib.ids import shard_of

    data = json.loads(caption_file(home).read_text())
    captioned = {a["image_id"] for a in data["annotations"]}
    keys = sorted(i["file_name"] for i in data["images"] if i["id"] in captioned)
    by_shard: dict[int, list[str]] = {}
    for key in keys:
        by_shard.setdefault(shard_of(key, settings.n_shards()), []).append(key)
    for shard in sorted(by_shard):
        if len(by_shard[shard]) >= n:
            return by_shard[shard][:n]
    raise RuntimeError(f"no shard holds {n} captioned images")


def edit_captions(home: Path, image_keys: list[str]) -> None:
    """Rewrite the first caption of each image (a new, valid, non-duplicate sentence)."""
    path = caption_file(home)
    data = json.loads(path.read_text())
    ids = {i["id"]: i["file_name"] for i in data["images"] if i["file_name"] in image_keys}
    done = set()
    for ann in data["annotations"]:
        key = ids.get(ann["image_id"])
        if key and key not in done:
            ann["caption"] = f"A rewritten caption describing {key.split('.')[0].replace('_', ' ')} in new words."
            done.add(key)
    assert done == set(image_keys), done
    path.write_text(json.dumps(data, indent=1))


def most_used_seed(store: Path) -> str | None:
    """The seed shown to the most images in the current generated_instructions (ties: by id)."""
    import polars as pl

    frames = [pl.read_parquet(store / json.loads(p.read_text())["path"])
              for p in sorted((store / "_current" / "generated_instructions").glob("*/*.json"))]
    ids = [i for f in frames if "seed_ids" in f.columns for ids in f["seed_ids"].to_list() for i in ids or []]
    return min(set(ids), key=lambda i: (-ids.count(i), i)) if ids else None


def edit_seed(home: Path, seed_id: str | None = None) -> str:
    """Copy the packaged seeds file, change one seed's text (default: the first), point the loader at the copy."""
    import yaml

    from visit_assets.lib.mminstruct import seeds as seeds_mod

    raw = yaml.safe_load(seeds_mod.DEFAULT_SEEDS_PATH.read_text())
    seed = next(s for s in raw["seeds"] if seed_id in (None, s["id"]))
    seed["text"] = seed["text"].rstrip(".") + ", and end with a surprising twist."
    copy = home / "seed_instructions.yaml"
    copy.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    seeds_mod.DEFAULT_SEEDS_PATH = copy  # no setting or env var names the seeds file
    return seed["id"]


OLD_ANGLE = "how the objects relate to each other and what that implies"
NEW_ANGLE = "how the objects relate to one another and what that implies about the scene"


def bump_prompt(home: Path, prompt_id: str = "complex_reasoning"):
    """Reword one of an Instructify prompt type's reasoning angles and bump its version (an edit
    the stand-in still recognises: it matches the template, whose slot takes any angle; the number
    of angles stays, so every image draws what it drew before), in a copy of the packaged prompt and
    data files, then redo what restarting the code location after editing the packaged file would:
    recompute the conversation stage's code version (it hashes its prompt files) and rebuild the
    definitions. Returns (new version, new definitions)."""
    import importlib

    from visit_assets.definitions import build_defs
    from visit_assets.defs.conversations import assets as conversation_assets
    from visit_assets.lib import code_version as cv
    from visit_assets.lib.instructify import registry as registry_mod

    overlay = home / "package"
    for sub in ("prompts", "data"):
        shutil.copytree(cv.PACKAGE / sub, overlay / sub)
    path = overlay / "prompts" / "instructify" / f"{prompt_id}.yaml"
    text = path.read_text(encoding="utf-8")
    version = int(registry_mod.load_prompt(path).version) + 1
    edited = text.replace(f'      - "{OLD_ANGLE}"\n', f'      - "{NEW_ANGLE}"\n').replace(
        f"version: {version - 1}\n", f"version: {version}\n", 1)
    assert edited.count(NEW_ANGLE) == 1 and f"version: {version}\n" in edited, "prompt changed; update the edit"
    path.write_text(edited, encoding="utf-8")
    # No setting or env var names the prompt folder or the package root: point the module globals at the copy.
    cv.PACKAGE = overlay
    registry_mod.DEFAULT_DIR = overlay / "prompts" / "instructify"
    importlib.reload(conversation_assets)
    return version, build_defs()


def _restore_package(saved) -> None:
    import importlib

    from visit_assets.defs.conversations import assets as conversation_assets
    from visit_assets.lib import code_version as cv
    from visit_assets.lib.instructify import registry as registry_mod
    from visit_assets.lib.mminstruct import seeds as seeds_mod

    changed = (cv.PACKAGE, registry_mod.DEFAULT_DIR) != saved[1:]
    seeds_mod.DEFAULT_SEEDS_PATH, cv.PACKAGE, registry_mod.DEFAULT_DIR = saved
    if changed:
        importlib.reload(conversation_assets)


# --- what a run did ------------------------------------------------------------------------------

def pointers(store: Path) -> dict[tuple[str, str | None], str]:
    """(asset, partition) -> current data version, from the store's pointer files."""
    out = {}
    for p in (store / "_current").glob("*/*/*.json"):
        d = json.loads(p.read_text())
        out[(d["asset"], None if d["shard"] is None else str(d["shard"]))] = d["data_version"]
    return out


def cache_keys(store: Path) -> set[str]:
    path = store / "llm_cache.sqlite"
    if not path.exists():
        return set()
    con = sqlite3.connect(path)
    try:
        return {k for (k,) in con.execute("SELECT key FROM llm_responses")}
    finally:
        con.close()


Owner = tuple  # (asset, shard or None for dataset-level assets, image_id, prompt_id, seed_ids, recipe)


def key_owners(store: Path, keys: set[str]) -> dict[str, set[Owner]]:
    """For each cache key, the current rows naming it in any *cache_key* column, as
    (asset, shard, image_id, prompt_id, seed_ids, recipe); shard is None for dataset-level assets.
    Not every request is named by a row: the MM-Instruct fit check and the quality judge are not."""
    import polars as pl

    owners: dict[str, set[Owner]] = {k: set() for k in keys}
    if not keys:
        return owners
    wanted = list(keys)
    for p in sorted((store / "_current").glob("*/*/*.json")):
        d = json.loads(p.read_text())
        frame = pl.read_parquet(store / d["path"])
        extra = [c for c in ("image_id", "prompt_id", "seed_ids", "recipe") if c in frame.columns]
        for col in [c for c in frame.columns if "cache_key" in c]:
            if frame.schema[col] not in (pl.String, pl.List(pl.String)):
                continue
            rows = frame.select(pl.col(col).alias("_k"), *extra)
            if frame.schema[col] != pl.String:
                rows = rows.explode("_k")
            for r in rows.filter(pl.col("_k").is_in(wanted)).to_dicts():
                owners[r["_k"]].add((d["asset"], d["shard"], r.get("image_id"), r.get("prompt_id"),
                                     tuple(r.get("seed_ids") or ()), r.get("recipe")))
    return owners


@dataclass
class Step:
    name: str
    wall_s: float
    executed: int  # asset partitions materialized
    changed: dict[str, int]  # asset -> partitions with a new data version
    total_partitions: int
    llm: dict[str, dict[str, int]]  # asset -> {requests, cache_hits, sent}
    llm_by_partition: dict[tuple[str, str], int]  # (asset, shard) -> sent
    new_cache_rows: int
    backend_calls: int | None
    owners: dict[str, set[Owner]] = field(default_factory=dict)
    changed_partitions: set[tuple[str, str | None]] = field(default_factory=set)

    def total(self, what: str) -> int:
        return sum(v.get(what, 0) for v in self.llm.values())

    def sent_per_image_stages(self) -> int:
        return sum(v.get("sent", 0) for a, v in self.llm.items() if a in PER_IMAGE_LLM_ASSETS)

    def images_sent_for(self) -> set[str]:
        """Images whose per-image (dataset x shard) rows name a request sent in this step."""
        return {o[2] for owners in self.owners.values() for o in owners if o[1] is not None and o[2] is not None}

    def unattributed_or_dataset_level(self) -> int:
        """Sent requests no per-image row names (dataset-level stages, and requests no row records)."""
        return sum(1 for owners in self.owners.values() if not any(o[1] is not None for o in owners))

    def by_kind(self, images: set[str] | None = None) -> dict[str, tuple[int, int]]:
        """Sent requests (new cache rows) by what asked for them: kind -> (requests, images); with
        `images`, only requests named by rows of those images (None: all)."""
        kinds: dict[str, tuple[set, set]] = {}
        for key, owners in self.owners.items():
            per_image = sorted((o for o in owners if o[1] is not None), key=str)
            if images is not None and not any(o[2] in images for o in per_image):
                continue
            kind = _kind(per_image[0] if per_image else min(owners, key=str) if owners else None)
            keys, imgs = kinds.setdefault(kind, (set(), set()))
            keys.add(key)
            imgs.update(o[2] for o in per_image if o[2])
        return {k: (len(v[0]), len(v[1])) for k, v in sorted(kinds.items())}


def _kind(owner: Owner | None) -> str:
    if owner is None:
        return "named by no row (e.g. image_facts' QA rewrites)"
    asset, recipe = owner[0], owner[5]
    if asset in ("conversation_attempts", "generated_conversations", "filtered_conversations", "conversation_rejects"):
        return "MM-Instruct answers" if recipe == "mm-instruct" else "Instructify conversations + verification"
    return {"generated_instructions": "instruction generation", "clustered_instructions": "cluster merges",
            "pairwise_evaluation": "pairwise judge"}.get(asset, asset)


def _backend_calls() -> int | None:
    """Requests the in-process backend answered, where it counts them (echo, llama.cpp)."""
    from visit_assets.defs.llm.resources import LLMResource

    return getattr(LLMResource().get_client().backend, "calls", None)


def run_step(name: str, defs, instance, store: Path, op_config: dict, run_config: dict,
             calls=_backend_calls) -> Step:
    """One whole-graph run and what it did; `calls()` counts the requests a model answered so far."""
    import dagster as dg

    from visit_assets.defs.catalog.assets import CATALOG_ASSET
    from visit_assets.runner import run_dataset

    before, keys_before = pointers(store), cache_keys(store)
    calls_before = calls()
    t_start = time.time()
    t0 = time.perf_counter()
    run_dataset(defs, DATASET, instance, run_config=run_config, op_config=op_config, log=lambda _: None)
    wall = time.perf_counter() - t0
    after, keys_after = pointers(store), cache_keys(store)
    llm: dict[str, dict[str, int]] = {}
    by_partition: dict[tuple[str, str], int] = {}
    executed = 0
    for key in defs.resolve_asset_graph().get_all_asset_keys() - {CATALOG_ASSET}:  # the store's partitions only
        events = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_timestamp=t_start), limit=10_000).records
        for record in events:
            executed += 1
            mat = record.asset_materialization
            meta = {k: v.value for k, v in mat.metadata.items() if k in ("llm_requests", "llm_cache_hits", "llm_sent")}
            if not meta:
                continue
            stats = llm.setdefault(key.to_user_string(), {"requests": 0, "cache_hits": 0, "sent": 0})
            for short in ("requests", "cache_hits", "sent"):
                stats[short] += int(meta.get(f"llm_{short}", 0))
            shard = str(mat.partition).split("|")[-1] if mat.partition else "-"
            by_partition[(key.to_user_string(), shard)] = by_partition.get((key.to_user_string(), shard), 0) + \
                int(meta.get("llm_sent", 0))
    changed_parts = {k for k, v in after.items() if before.get(k) != v}
    changed: dict[str, int] = {}
    for asset, _ in changed_parts:
        changed[asset] = changed.get(asset, 0) + 1
    new_keys = keys_after - keys_before
    calls_after = calls()
    return Step(name=name, wall_s=wall, executed=executed, changed=changed, total_partitions=len(after), llm=llm,
                llm_by_partition=by_partition, new_cache_rows=len(new_keys),
                backend_calls=None if calls_after is None else calls_after - calls_before,
                owners=key_owners(store, new_keys), changed_partitions=changed_parts)


def scenario(home: Path, steps=("full", "captions", "seed", "prompt"), log=print,
             calls=_backend_calls) -> tuple[list[Step], dict]:
    """Run the full graph, then each edit and a re-run; returns the steps and what was edited."""
    import dagster as dg

    from visit_assets import settings
    from visit_assets.cli import LAPTOP, QUIET
    from visit_assets.definitions import defs as loaded_defs
    from visit_assets.lib import code_version as cv
    from visit_assets.lib.instructify import registry as registry_mod
    from visit_assets.lib.mminstruct import seeds as seeds_mod

    saved_env = {v: os.environ.get(v) for v in ("VISIT_HOME", "VISIT_STORE", "VISIT_DATASETS", "VISIT_LLM_CACHE")}
    os.environ["VISIT_HOME"] = str(home)
    for var in ("VISIT_STORE", "VISIT_DATASETS", "VISIT_LLM_CACHE"):
        os.environ.pop(var, None)
    if not (home / "datasets" / DATASET).exists():
        shutil.copytree(settings.sample_dataset(), home / "datasets" / DATASET)
    store = settings.store_root()
    edits: dict = {}
    saved = (seeds_mod.DEFAULT_SEEDS_PATH, cv.PACKAGE, registry_mod.DEFAULT_DIR)
    defs = loaded_defs  # the prompt step reloads the definitions, as restarting the code location would
    results = []
    try:
        with dg.instance_for_test() as instance:
            for step in steps:
                if step == "captions":
                    edits["images"] = pick_images(home)
                    edit_captions(home, edits["images"])
                elif step == "seed":
                    edits["seed"] = edit_seed(home, most_used_seed(store))
                elif step == "prompt":
                    edits["prompt_version"], defs = bump_prompt(home)
                elif step != "full":
                    raise ValueError(step)
                log(f"[{step}] running the graph ...")
                results.append(run_step(step, defs, instance, store, LAPTOP, QUIET, calls))
                log(f"[{step}] {results[-1].wall_s:.1f} s")
    finally:
        _restore_package(saved)
        for var, value in saved_env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    return results, edits


# --- report --------------------------------------------------------------------------------------

LABELS = {"full": "full run (empty cache)", "captions": "2 captions edited", "seed": "1 seed instruction edited",
          "prompt": "prompt complex_reasoning v1 -> v2 (an angle reworded)"}


def _markdown(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]


def summary(steps: list[Step], edits: dict, edited: set[str]) -> list[dict]:
    """Each step's figures as the result file keeps them (what the docs are rendered from)."""
    out = []
    for s in steps:
        row = {"step": s.name, "label": LABELS.get(s.name, s.name), "wall_s": round(s.wall_s, 2),
               "partitions_run": s.executed, "new_data_version": sum(s.changed.values()),
               "partitions": s.total_partitions, "llm_requests": s.total("requests"),
               "cache_hits": s.total("cache_hits"), "sent": s.total("sent"), "new_cache_rows": s.new_cache_rows,
               "model_calls": s.backend_calls,
               "sent_per_image_stages": s.sent_per_image_stages(), "images_named": len(s.images_sent_for()),
               "sent_by_kind": {k: {"requests": n, "images": i} for k, (n, i) in s.by_kind().items()},
               "per_asset": {a: {"new_data_version": s.changed.get(a, 0), "sent": s.llm.get(a, {}).get("sent")}
                             for a in sorted(set(s.llm) | set(s.changed))}}
        if s.name == "captions":
            row["edited_images"] = sorted(edits.get("images", []))
            row["sent_for_edited_images"] = {k: n for k, (n, _) in s.by_kind(edited).items()}
            row["other_images_named"] = len(s.images_sent_for() - edited)
        out.append(row)
    return out


def render(result: dict) -> str:
    steps, full = result["steps"], result["steps"][0]
    lines = [f"Measured by `bench/incremental.py --backend {result['backend']}` (bench/results/{_result_name(result)}; "
             f"{result['machine']['cores']} cores, {result['machine']['cpu']}): {BACKENDS[result['backend']]}. On a "
             "fresh copy of the sample the whole graph runs as `make sample` runs it, then again after each edit, one "
             "after the other; every run executes every partition (a UI \"materialize all\"): \"new data version\" is "
             "what the automation sensor regenerates, \"sent\" the LLM requests that missed the cache, checked against "
             "the cache file's new rows and the requests the model answered (\"model calls\", where the backend "
             "counts them).", ""]
    lines += _markdown(
        ["step", "new data version", "LLM requests", "cache hits", "sent", "new cache rows", "model calls",
         "images named", "wall s", "wall / full", "sent / full"],
        [[s["label"], f"{s['new_data_version']}/{s['partitions']}", f"{s['llm_requests']:,}", f"{s['cache_hits']:,}",
          f"{s['sent']:,}", f"{s['new_cache_rows']:,}", "-" if s.get("model_calls") is None else f"{s['model_calls']:,}",
          str(s["images_named"]), f"{s['wall_s']:.1f}",
          f"{s['wall_s'] / full['wall_s']:.2f}", f"{s['sent'] / max(full['sent'], 1):.3f}"] for s in steps])
    kinds = sorted({k for s in steps for k in s["sent_by_kind"]})
    lines += ["", "Requests sent (new cache rows) by what asked for them: requests (images named)", ""]
    lines += _markdown(["kind", *(s["step"] for s in steps)],
                       [[k, *(f"{s['sent_by_kind'][k]['requests']} ({s['sent_by_kind'][k]['images']})"
                              if k in s["sent_by_kind"] else "0" for s in steps)] for k in kinds])
    captions = next((s for s in steps if s["step"] == "captions"), None)
    if captions is not None:
        mine = captions["sent_for_edited_images"]
        lines += ["", f"Captions step: {sum(mine.values())} of its sent requests are named by rows of the "
                      f"{len(captions['edited_images'])} edited images ({', '.join(f'{k}: {n}' for k, n in mine.items())}); "
                      f"{captions['other_images_named']} other images are named by requests it sent."]
    assets = sorted({a for s in steps for a in s["per_asset"]})
    lines += ["", "Per asset: partitions with a new data version / LLM requests sent", ""]
    lines += _markdown(["asset", *(s["step"] for s in steps)],
                       [[a, *(f"{s['per_asset'][a]['new_data_version']} / "
                              f"{'-' if s['per_asset'][a]['sent'] is None else s['per_asset'][a]['sent']}"
                              if a in s["per_asset"] else "0 / -" for s in steps)] for a in assets])
    return "\n".join(lines)


BACKENDS = {
    "stand-in": "every LLM role answered by the stand-in (a test instrument that answers competently; its own "
                "process, zero latency, no faults), so the MM-Instruct cascade is exercised",
    "llama_cpp": "the packaged SmolLM2-135M through llama.cpp",
    "echo": "the model-free echo backend (no instruction parses, so nothing is clustered, matched or answered)",
}


def _result_name(result: dict) -> str:
    return f"incremental-{result['backend']}-{result['date']}.json"


def _llm_env(url: str) -> dict[str, str]:
    """Every LLM role on the stand-in at `url`; the paths stay the scenario's own."""
    from visit_assets.rehearsal import _rehearsal_env

    paths = ("VISIT_HOME", "VISIT_STORE", "VISIT_DATASETS", "VISIT_LLM_CACHE", "DAGSTER_HOME")
    return {k: v for k, v in _rehearsal_env(Path("."), url).items() if k not in paths}


def measure(backend: str, home: Path) -> dict:
    from common import StandIn, commit, machine

    from visit_assets.lib.ids import image_id

    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    saved = dict(os.environ)
    try:
        if backend == "stand-in":
            with StandIn() as server:  # model calls counted on the stand-in's side
                os.environ.update(_llm_env(server.url))
                steps, edits = scenario(home, log=log, calls=lambda: server.stats()["replies"])
        else:
            os.environ["VISIT_LLM_BACKEND"] = backend
            steps, edits = scenario(home, log=log)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    edited = {image_id(DATASET, k) for k in edits.get("images", [])}
    return {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(), "backend": backend,
            "edits": edits, "steps": summary(steps, edits, edited)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="stand-in", choices=sorted(BACKENDS),
                        help="who answers the LLM requests (default: the stand-in)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--write-docs", action="store_true", help="render docs/benchmarks.md's section from the "
                        "newest result file")
    args = parser.parse_args(argv)
    home = args.keep or Path(tempfile.mkdtemp(prefix="visit-incremental-"))
    home.mkdir(parents=True, exist_ok=True)
    try:
        result = measure(args.backend, home)
    finally:
        if args.keep is None:
            shutil.rmtree(home, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / _result_name(result)).write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    if args.write_docs:
        from common import write_section

        newest = json.loads(sorted(RESULTS.glob("incremental-*.json"), key=lambda p: p.name[-15:])[-1].read_text())
        write_section("incremental", render(newest), "Incremental regeneration: what re-runs after a small edit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

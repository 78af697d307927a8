"""How long the data viewer's pages take at COCO scale, and its screenshots for the user guide.

    .venv/bin/python bench/viewer_pages.py [--homes H1 H2 ...] [--repeats 7] [--warmup 2] [--write-docs]
    .venv/bin/python bench/viewer_pages.py docs            # re-render the docs section from the newest result
    .venv/bin/python bench/viewer_pages.py screenshots [--home H]   # docs/img/viewer-*.png
    .venv/bin/python bench/viewer_pages.py version-screenshots      # docs/img/viewer-versions*.png

Reads homes that bench/coco_graph.py filled (default: the 10,000- and 118,287-image `-stages`
homes), read-only: the viewer builds its private catalog in a temporary folder. For each home, in
this process, one after the other: the one-off cost of `create_app` (the private catalog built over
the store, and in it the browse page's tables: its rows copied with their turn text lower-cased,
and their positions; that part and the folder's size are reported on their own), then each page
through Starlette's TestClient (the whole app: routing, SQL, template),
`--warmup` loads and `--repeats` timed loads, reported as median and max. Pages: the dataset page,
three image pages (first, middle and last image by image_key), browse page 1, a deep browse page,
browse with a text filter, browse filtered by status=rejected, one conversation's LLaVA JSON.
Target (issue): under 1 s for an image page and a browse page at 118k images.

Raw results: bench/results/viewer_pages-<date>.json with the machine's facts; --write-docs renders
the section of docs/benchmarks.md between `<!-- viewer_pages:begin -->` and its end marker from
the newest result file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
IMG = REPO / "docs" / "img"
HOMES = [HERE / "out" / "coco_graph" / "home-10000-stages", HERE / "out" / "coco_graph" / "home-118287-stages"]
TARGET_S = 1.0
DEEP_PAGE = 1000
TEXT = "frisbee"  # a word COCO captions use, so the filter matches a few rows among many
CHROMIUM = "/usr/bin/chromium"
VERSIONS_HOME = HERE / "out" / "viewer-versions"  # made afresh by version-screenshots
VERSION_ASSETS = ["source_records", "grouped_metadata", "metadata_rejects", "image_descriptions"]  # ingest
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

from common import commit, machine, write_section  # noqa: E402


def _dataset(home: Path) -> str:
    return sorted(p.name for p in (home / "datasets").iterdir() if p.is_dir())[0]


def _subjects(app, dataset: str) -> dict:
    """Image ids (first, middle, last by image_key) and a conversation id, found once (not timed)."""
    with contextlib.closing(app.state.reader.db()) as db:
        n = db.con.execute("SELECT count(*) FROM grouped_metadata WHERE dataset = ?", [dataset]).fetchone()[0]
        pick = {}
        for name, offset in (("first", 0), ("middle", n // 2), ("last", n - 1)):
            pick[name] = db.con.execute("SELECT image_id, image_key FROM grouped_metadata WHERE dataset = ? "
                                        "ORDER BY image_key LIMIT 1 OFFSET ?", [dataset, offset]).fetchone()
        conv = db.con.execute("SELECT conversation_id FROM generated_conversations WHERE dataset = ? "
                              "ORDER BY conversation_id LIMIT 1 OFFSET 1000", [dataset]).fetchone()[0]
    return {"images": n, "pick": pick, "conversation": conv}


def pages(dataset: str, subjects: dict) -> list[tuple[str, str]]:
    p = subjects["pick"]
    return [("dataset page", f"/?dataset={dataset}"),
            *[(f"image page ({k})", f"/image/{dataset}/{p[k][0]}") for k in ("first", "middle", "last")],
            ("browse page 1", "/browse"),
            (f"browse page {DEEP_PAGE}", f"/browse?page={DEEP_PAGE}"),
            (f"browse, text \"{TEXT}\"", f"/browse?text={TEXT}"),
            ("browse, status=rejected", "/browse?status=rejected"),
            ("LLaVA JSON", f"/conversation/{dataset}/{subjects['conversation']}.json")]


def measure(home: Path, repeats: int, warmup: int) -> dict:
    from starlette.testclient import TestClient

    from visit_assets.viewer.app import create_app

    dataset = _dataset(home)
    t0 = time.perf_counter()
    app = create_app(home / "store", home / "datasets")
    start_s = time.perf_counter() - t0
    browse_s = app.state.reader.browse_built_s  # the part of start_s spent on the browse tables
    catalog_mb = app.state.reader.catalog_bytes / 1e6  # on disk, in the temporary folder
    subjects = _subjects(app, dataset)
    print(f"{home.name}: {subjects['images']:,} images, private catalog built in {start_s:.2f} s "
          f"(browse tables {browse_s:.2f} s), {catalog_mb:.0f} MB", flush=True)
    rows = []
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for name, url in pages(dataset, subjects):
            times, status, size = [], None, 0
            for i in range(warmup + repeats):
                t = time.perf_counter()
                reply = client.get(url)
                s = time.perf_counter() - t
                status, size = reply.status_code, len(reply.content)
                if i >= warmup:
                    times.append(s)
            row = {"page": name, "url": url, "status": status, "bytes": size, "median_s": round(statistics.median(times), 4),
                   "max_s": round(max(times), 4), "loads": len(times)}
            rows.append(row)
            print(f"  {name:28} {row['median_s']:.3f} s median, {row['max_s']:.3f} s max  ({status}, {size:,} B)",
                  flush=True)
    return {"home": str(home.relative_to(REPO)), "dataset": dataset, "images": subjects["images"],
            "catalog_build_s": round(start_s, 3), "browse_tables_s": round(browse_s, 3),
            "private_catalog_mb": round(catalog_mb, 1), "pages": rows}


def _once(label: str, stores: list[dict], key: str, fmt: str) -> str:
    """A table row for a one-off figure of each store (and their ratio, for two)."""
    ratio = f" {stores[1][key] / stores[0][key]:.1f}x |" if len(stores) == 2 and stores[0][key] else ""
    return f"| {label} | " + " | ".join(fmt.format(s[key]) for s in stores) + " |" + ratio


def render(result: dict) -> str:
    stores = result["stores"]
    head = " | ".join(f"{s['images']:,} images: median / max s" for s in stores)
    lines = [f"`nice -n 10 .venv/bin/python bench/viewer_pages.py --write-docs`: the viewer app "
             f"(`create_app`) through Starlette's TestClient, in one process, over the `-stages` stores of "
             f"bench/coco_graph.py; {result['warmup']} warm-up loads, then {result['repeats']} timed loads per page. "
             f"Raw results `bench/results/viewer_pages-{result['date']}.json` ({result['date']}, commit "
             f"{result['commit']}, {result['machine']['cores']} cores, shared with other jobs). Target: under "
             f"{TARGET_S:g} s for an image page and a browse page at 118k images.", "",
             f"| page | {head} |" + (" ratio |" if len(stores) == 2 else ""),
             "| --- |" + " ---: |" * len(stores) + (" ---: |" if len(stores) == 2 else "")]
    lines.append(_once("private catalog built at start (once), s", stores, "catalog_build_s", "{:.2f}"))
    if all("browse_tables_s" in s for s in stores):  # results from before the browse tables have none
        lines.append(_once("of which: browse tables (rows copied with lower-cased turn text, positions), s", stores,
                           "browse_tables_s", "{:.2f}"))
        lines.append(_once("private catalog on disk (the browse tables, mostly), MB", stores, "private_catalog_mb",
                           "{:.0f}"))
    for i, row in enumerate(stores[0]["pages"]):
        cells = [f"{s['pages'][i]['median_s']:.3f} / {s['pages'][i]['max_s']:.3f}" for s in stores]
        ratio = ""
        if len(stores) == 2:
            ratio = f" {stores[1]['pages'][i]['median_s'] / stores[0]['pages'][i]['median_s']:.1f}x |"
        lines.append(f"| {row['page']} | " + " | ".join(cells) + " |" + ratio)
    big = stores[-1]
    over = [r for r in big["pages"] if r["median_s"] > TARGET_S and (r["page"].startswith("image") or
                                                                      r["page"].startswith("browse"))]
    lines.append("")
    if over:
        lines.append(f"Over {TARGET_S:g} s (median) at {big['images']:,} images: "
                     + ", ".join(f"{r['page']} ({r['median_s']:.2f} s)" for r in over) + ".")
    else:
        lines.append(f"At {big['images']:,} images every image and browse page is under {TARGET_S:g} s (median).")
    return "\n".join(lines)


def write_docs() -> None:
    newest = json.loads(sorted(RESULTS.glob("viewer_pages-*.json"))[-1].read_text())
    write_section("viewer_pages", render(newest), "Data viewer: page load at COCO scale")


def screenshots(home: Path) -> None:
    """The dataset page, an image page with boxes and a browse page, as PNGs in docs/img/."""
    from visit_assets.viewer.app import create_app

    dataset = _dataset(home)
    app = create_app(home / "store", home / "datasets")
    with contextlib.closing(app.state.reader.db()) as db:  # an image with a few boxes and conversations
        image_id = db.con.execute("""
            SELECT g.image_id FROM grouped_metadata g WHERE g.dataset = ? AND len(g.boxes) BETWEEN 3 AND 6
            ORDER BY g.image_key LIMIT 1""", [dataset]).fetchone()[0]
    shoot(app, [("viewer-dataset.png", f"/?dataset={dataset}"), ("viewer-image.png", f"/image/{dataset}/{image_id}"),
                ("viewer-browse.png", "/browse?status=selected")])


def version_screenshots(home: Path) -> None:
    """The two versions pages, as PNGs in docs/img/, on the sample in `home` (made afresh): the whole
    graph through the stand-in (rehearsal.run), then a second version with one caption edited, of
    which only the ingest assets run again."""
    import shutil

    import dagster as dg

    from visit_assets import rehearsal
    from visit_assets.definitions import defs
    from visit_assets.lib import versions
    from visit_assets.lib.environment import environment
    from visit_assets.runner import run_dataset
    from visit_assets.viewer.app import create_app

    shutil.rmtree(home, ignore_errors=True)
    rehearsal.run(home, log=lambda _: None)
    path = home / "datasets" / "sample" / "annotations" / "captions.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["caption"] = "A caption edited for the second version of the sample"
    path.write_text(json.dumps(data, ensure_ascii=False))
    places = {"VISIT_HOME": str(home), "VISIT_STORE": str(home / "store"), "VISIT_DATASETS": str(home / "datasets")}
    with dg.instance_for_test() as instance, environment(places):  # never the caller's store
        run_dataset(defs, "sample", instance, only=VERSION_ASSETS, log=lambda _: None)
    diff = versions.diff_versions(home / "store", "sample")
    image_id = diff["assets"]["grouped_metadata"]["images"]["examples"][0]["image_id"]
    shoot(create_app(home / "store", home / "datasets"),
          [("viewer-versions.png", "/versions/sample"), ("viewer-versions-image.png", f"/versions/sample/image/{image_id}")])


def shoot(app, shots: list[tuple[str, str]]) -> None:
    """Serve `app` on a free loopback port and save a screenshot of each (file name, path) in docs/img/."""
    import uvicorn
    from playwright.sync_api import sync_playwright

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    IMG.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 800})
                for name, url in shots:
                    page.goto(base + url, wait_until="load", timeout=120_000)
                    page.screenshot(path=str(IMG / name), full_page=False)
                    print(f"{IMG / name}: {(IMG / name).stat().st_size / 1024:.0f} KB")
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        app.state.reader.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", nargs="?", choices=("run", "docs", "screenshots", "version-screenshots"), default="run")
    ap.add_argument("--homes", nargs="+", type=Path, default=HOMES)
    ap.add_argument("--home", type=Path, default=HOMES[0], help="screenshots: the home shown")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    if args.command == "docs":
        return write_docs()
    if args.command == "screenshots":
        return screenshots(args.home.resolve())
    if args.command == "version-screenshots":
        return version_screenshots(VERSIONS_HOME)
    result = {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(),
              "repeats": args.repeats, "warmup": args.warmup, "target_s": TARGET_S, "stores": []}
    for home in args.homes:
        result["stores"].append(measure(home.resolve(), args.repeats, args.warmup))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"viewer_pages-{result['date']}.json"
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"raw results: {out.relative_to(REPO)}")
    if args.write_docs:
        write_docs()


if __name__ == "__main__":
    main()

"""How fast a user sees a big dataset: the DuckDB catalog's queries and the Dagster UI's asset pages.

    .venv/bin/python bench/ui_catalog.py [--home bench/out/coco_graph/home-10000-whole] [--write-docs]

Reads a home that bench/coco_graph.py filled (its Parquet store and Dagster instance; nothing is
written to them but the catalog file). Measures:
  catalog   `build_catalog` over the store, then `image_lineage` for one image (20 images drawn with
            a fixed seed, each on a fresh connection as a user's first query is) and
            `rejects_by_reason` (20 times): median and worst, against issue #13's 200 ms
  UI        `dagster-webserver` (no daemon: nothing runs) on 127.0.0.1 over the instance; in headless
            Chromium (Debian's /usr/bin/chromium, never a downloaded browser) each asset page, from
            navigation until its latest materialization's run link is drawn: median of 3 loads
            after one warm-up, against the issue's 3 s
Raw results: bench/results/ui_catalog-<images>-<date>.json with the machine's facts; --write-docs
renders the section of docs/benchmarks.md between its markers from the newest result files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
CHROMIUM = "/usr/bin/chromium"
CATALOG_TARGET_MS, PAGE_TARGET_S = 200, 3.0  # issue #13, item 6
PAGES = ("source_records", "grouped_metadata", "generated_conversations", "conversation_attempts",
         "quality_scores", "selected_subset")

from common import commit, machine, open_instance, write_section  # noqa: E402


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return 1000 * (time.perf_counter() - t0)


def catalog(store: Path) -> dict:
    import duckdb

    from visit_assets.lib.catalog import build_catalog

    t0 = time.perf_counter()
    path = build_catalog(store)
    build_s = time.perf_counter() - t0
    with duckdb.connect(str(path), read_only=True) as con:
        ids = [r[0] for r in con.execute("SELECT image_id FROM grouped_metadata ORDER BY image_id").fetchall()]
    sample = random.Random(0).sample(ids, min(20, len(ids)))

    def lineage(image_id: str) -> int:
        with duckdb.connect(str(path), read_only=True) as con:
            return len(con.execute("SELECT * FROM image_lineage WHERE image_id = ?", [image_id]).fetchall())

    rows = []
    lineage_ms = [_ms(lambda i=i: rows.append(lineage(i))) for i in sample]
    with duckdb.connect(str(path), read_only=True) as con:
        reasons = con.execute("SELECT * FROM rejects_by_reason").fetchall()
        rejects_ms = [_ms(lambda: con.execute("SELECT * FROM rejects_by_reason").fetchall()) for _ in range(20)]
        stages = sorted(r[0] for r in con.execute("SELECT DISTINCT stage FROM rejects_by_reason").fetchall())
    return {"build_s": round(build_s, 2), "images": len(ids),
            "image_lineage": {"median_ms": round(statistics.median(lineage_ms), 1), "max_ms": round(max(lineage_ms), 1),
                              "rows_per_image": round(statistics.mean(rows), 1), "fresh_connection_each": True},
            "rejects_by_reason": {"median_ms": round(statistics.median(rejects_ms), 1),
                                  "max_ms": round(max(rejects_ms), 1), "rows": len(reasons), "stages": stages},
            "target_ms": CATALOG_TARGET_MS}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    url = f"http://127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1",
                             "-p", url.rsplit(":", 1)[1]], cwd=REPO, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited; see {log}")
        try:
            urllib.request.urlopen(url + "/server_info", timeout=5).read()
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"dagster-webserver did not start; see {log}")


def ui(home: Path, made: list[str]) -> dict:
    """Each of PAGES in `made` (a home of the first stages only has their pages)."""
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "DAGSTER_HOME": str(home / "dagster_home"), "VISIT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc, url = _serve(env, home / "webserver.log")
    pages = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            for asset in [a for a in PAGES if a in made]:
                times = []
                for _ in range(4):  # the first load warms the server's caches; the median of the rest counts
                    t0 = time.perf_counter()
                    page.goto(f"{url}/assets/{asset}")
                    page.locator('a[href^="/runs/"]').first.wait_for(timeout=120_000)
                    times.append(time.perf_counter() - t0)
                pages[asset] = {"first_s": round(times[0], 2), "median_s": round(statistics.median(times[1:]), 2),
                                "max_s": round(max(times[1:]), 2)}
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"pages": pages, "target_s": PAGE_TARGET_S, "server": "dagster-webserver, no daemon"}


def _instance(dagster_home: Path) -> dict:
    """Runs and event-log rows the instance holds, and the assets it has materializations of."""
    with open_instance(dagster_home) as instance:
        runs = instance.get_runs()
        return {"runs": len(runs), "event_log_rows": sum(len(instance.all_logs(r.run_id)) for r in runs),
                "materialized": sorted(k.to_user_string() for k in instance.get_asset_keys()
                                       if instance.get_latest_materialization_event(k) is not None)}


def measure(home: Path) -> dict:
    cat = catalog(home / "store")
    instance = _instance(home / "dagster_home")
    return {"date": datetime.date.today().isoformat(), "commit": commit(), "machine": machine(),
            "home": str(home.relative_to(REPO)) if home.is_relative_to(REPO) else str(home),
            "images": cat["images"], "dagster": {k: instance[k] for k in ("runs", "event_log_rows")}, "catalog": cat,
            "ui": ui(home, instance["materialized"])}


def _result_name(r: dict) -> str:
    return f"ui_catalog-{r['images']}-{r['date']}.json"


def render(results: list[dict]) -> str:
    lines = []
    for r in results:
        c, d = r["catalog"], r["dagster"]
        lines += [f"**{r['images']:,} images** (bench/results/{_result_name(r)}; {r['machine']['cores']} cores; "
                  f"the instance holds {d['runs']} runs, {d['event_log_rows']:,} event-log rows). Catalog built in "
                  f"{c['build_s']} s.", "",
                  "| query | median ms | worst ms | target ms |", "|---|---|---|---|",
                  f"| `image_lineage` for one image (fresh connection; {c['image_lineage']['rows_per_image']} rows) | "
                  f"{c['image_lineage']['median_ms']} | {c['image_lineage']['max_ms']} | {c['target_ms']} |",
                  f"| `rejects_by_reason` ({c['rejects_by_reason']['rows']} rows) | {c['rejects_by_reason']['median_ms']} | "
                  f"{c['rejects_by_reason']['max_ms']} | {c['target_ms']} |", "",
                  "| asset page (until its latest run link is drawn) | first load s | median s | worst s | target s |",
                  "|---|---|---|---|---|"]
        for asset, p in r["ui"]["pages"].items():
            lines.append(f"| {asset} | {p['first_s']} | {p['median_s']} | {p['max_s']} | {r['ui']['target_s']} |")
        lines.append("")
    return "\n".join(lines).rstrip()


def write_docs() -> None:
    newest = {}
    for path in sorted(RESULTS.glob("ui_catalog-*.json")):
        r = json.loads(path.read_text())
        newest[r["images"]] = r
    write_section("ui_catalog", render([newest[k] for k in sorted(newest)]), "Catalog queries and UI pages at scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=HERE / "out" / "coco_graph" / "home-10000-whole")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--docs-only", action="store_true")
    args = parser.parse_args()
    if not args.docs_only:
        result = measure(args.home.resolve())
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / _result_name(result)).write_text(json.dumps(result, indent=2) + "\n")
        print(render([result]))
    if args.write_docs or args.docs_only:
        write_docs()


if __name__ == "__main__":
    main()

"""`visit-assets` command line: run the whole graph on the embedded sample, rebuild the catalog."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from . import settings

REPO = Path(__file__).resolve().parents[1]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # run logs stay in the UI
# The sample runs on a 135M-parameter CPU model: fewer, shorter sampling rounds than the reference's
# (10 iterations, 1000 tokens), so the whole graph finishes in minutes. Same code, smaller knobs.
LAPTOP = {"generated_conversations": {"max_iterations": 2, "max_tokens": 192, "answer_max_tokens": 256},
          # 16 images: keep half of what is scored (the paper's alpha=200 would keep everything here)
          "selected_subset": {"alpha_fraction": 0.5}}


def _prepare_home() -> Path:
    """A persistent Dagster instance under VISIT_HOME, so `dagster dev` later shows these runs."""
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(settings.home() / "dagster_home")))
    dagster_home.mkdir(parents=True, exist_ok=True)
    if (REPO / "dagster.yaml").exists():
        shutil.copyfile(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    return dagster_home


def _install_sample(datasets: Path) -> Path:
    target = datasets / "sample"
    if not target.exists():
        shutil.copytree(settings.sample_dataset(), target)
    return target


def run_sample(args: argparse.Namespace) -> int:
    import dagster as dg

    from .definitions import defs
    from .lib.catalog import build_catalog, view_names
    from .runner import run_dataset

    dagster_home = _prepare_home()
    dataset_dir = _install_sample(settings.datasets_root())
    with dg.DagsterInstance.get() as instance:
        run_dataset(defs, dataset_dir.name, instance, run_config=QUIET, op_config=LAPTOP)
    catalog = build_catalog(settings.store_root())
    print(_summary(catalog, view_names(catalog), dagster_home))
    return 0


def _summary(catalog: Path, views: list[str], dagster_home: Path) -> str:
    import duckdb

    con = duckdb.connect(str(catalog), read_only=True)
    counts = {v: con.execute(f'SELECT count(*) FROM "{v}"').fetchone()[0]
              for v in views if not v.endswith("_all") and v != "current_partitions"}
    con.close()
    exports = sorted((settings.home() / "exports").glob("*/*/manifest.json"), key=lambda p: p.stat().st_mtime)
    lines = ["", "Done. Outputs (Parquet, one file per partition and version):", f"  {settings.store_root()}",
             "LLaVA export (JSON + Parquet + manifest; a new folder per content version):",
             f"  {exports[-1].parent if exports else '(none)'}",
             "Current rows per asset:"] + [f"  {v:<22} {n}" for v, n in sorted(counts.items())]
    lines += [
        "", "Query everything with DuckDB (views over the Parquet files; *_all views hold every version):",
        f"  {sys.executable} -c \"import duckdb; print(duckdb.connect('{catalog}', read_only=True)"
        ".sql('SELECT * FROM rejects_by_reason'))\"",
        "", "Open the Dagster UI (asset graph, runs, metadata) on http://127.0.0.1:3000 with `make ui`, i.e.:",
        f"  DAGSTER_HOME={dagster_home} {Path(sys.executable).parent / 'dagster'} dev -w {REPO / 'workspace.yaml'} -h 127.0.0.1 -p 3000",
    ]
    return "\n".join(lines)


def catalog(args: argparse.Namespace) -> int:
    from .lib.catalog import build_catalog, view_names

    path = build_catalog(settings.store_root())
    print(f"{path}: {', '.join(view_names(path))}")
    return 0


def diff(args: argparse.Namespace) -> int:
    import json

    from .lib.versions import diff_versions, format_diff

    try:
        result = diff_versions(settings.store_root(), args.dataset, args.old, args.new, examples=args.examples)
    except ValueError as e:
        print(f"visit-assets diff: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1) if args.json else format_diff(result))
    return 0


def check_setup(args: argparse.Namespace) -> int:
    from .setup_check import main as check

    return check([])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="visit-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run-sample", help="run the whole pipeline on the embedded sample dataset").set_defaults(fn=run_sample)
    sub.add_parser("catalog", help="rebuild the DuckDB catalog over the Parquet store").set_defaults(fn=catalog)
    d = sub.add_parser("diff", help="what changed between two dataset versions, and why (default: the last two)")
    d.add_argument("dataset")
    d.add_argument("--old", help="dataset version to compare from (default: the second most recent)")
    d.add_argument("--new", help="dataset version to compare to (default: the most recent)")
    d.add_argument("--examples", type=int, default=5, help="example items per kind of change")
    d.add_argument("--json", action="store_true", help="print the full result as JSON")
    d.set_defaults(fn=diff)
    sub.add_parser("check-setup", help="load and exercise each native component (llama.cpp, embedder, torch), "
                   "each in its own process").set_defaults(fn=check_setup)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())

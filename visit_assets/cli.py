"""`visit-assets` command line: run the whole graph on a dataset folder or the embedded sample, rebuild the catalog."""

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
LAPTOP: dict[str, dict] = {"generated_conversations": {"max_iterations": 2, "max_tokens": 192, "answer_max_tokens": 256},
          "instruction_examples": {"max_tokens": 256},
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
    """`run` on the embedded sample (copied into the datasets root), with the LAPTOP config."""
    from .run_command import RunFile

    dataset_dir = _install_sample(settings.datasets_root())
    return _run_folder(dataset_dir, RunFile(ops=LAPTOP, path="run-sample's LAPTOP config"), None, command="run-sample")


def run(args: argparse.Namespace) -> int:
    """A dataset folder through the whole graph, or the named assets, with a config file."""
    from .lib.environment import environment
    from .run_command import RunFile, UsageError, load_run_file, parse_assets

    try:
        run_file = load_run_file(args.config) if args.config else RunFile()
        only = parse_assets(args.assets)
    except UsageError as e:
        return _usage_error("run", e)
    with environment(run_file.env):  # before the definitions are imported: VISIT_SHARDS shapes them
        return _run_folder(Path(args.dataset), run_file, only, copy=args.copy, command="run")


def _usage_error(command: str, error: Exception) -> int:
    print(f"visit-assets {command}: {error}", file=sys.stderr)
    return 2


def _run_folder(folder: Path, run_file, only: list[str] | None, copy: bool = False, command: str = "run") -> int:
    """Check everything, put the folder where the sensors look, run the waves with progress on the
    terminal, then print where everything is. 2: nothing ran (a usage error); 1: a run failed."""
    dagster_home = _prepare_home()

    import dagster as dg

    from . import runner
    from .definitions import defs
    from .defs.catalog.assets import CATALOG_ASSET
    from .lib.catalog import CATALOG_FILE, assets_with_data, view_names
    from .progress import TerminalProgress, attached
    from .run_command import UsageError, check, check_dataset_folder, missing_inputs, place_dataset

    try:
        layout = check_dataset_folder(folder)
        only = check(defs, run_file, only)
    except UsageError as e:
        return _usage_error(command, e)
    printer = TerminalProgress()
    with dg.DagsterInstance.get() as instance:
        missing = missing_inputs(instance, defs, layout.name, only)
        if missing:
            return _usage_error(command, UsageError(
                f"these inputs of the named assets do not exist yet for dataset {layout.name}:\n"
                + "\n".join(f"  - {m}" for m in missing) + "\nAdd them to --assets, or run without --assets."))
        try:
            target, how = place_dataset(layout.root, settings.datasets_root(), copy=copy)
        except UsageError as e:
            return _usage_error(command, e)
        printer.line(f"dataset {target.name}: {layout.root} ({how}); Dagster instance {dagster_home}")
        if only is not None:
            printer.line(f"assets: {', '.join(only)}")
        with attached(instance, printer):
            try:
                catalog_asset = CATALOG_ASSET.to_user_string()  # the whole graph ends with it; a part too
                runs = only if only is None or catalog_asset in only else [*only, catalog_asset]
                runner.run_dataset(defs, target.name, instance, run_config={**QUIET, **run_file.run_config()},
                                   op_config=run_file.ops, only=runs, log=printer.line)
            except RuntimeError as e:
                print(f"visit-assets {command}: {e}", file=sys.stderr)
                print(f"The failed run, with its logs, is in the Dagster UI:\n  {_ui_command(dagster_home)}",
                      file=sys.stderr)
                return 1
    catalog = settings.store_root().resolve() / CATALOG_FILE  # made by the duckdb_catalog asset
    views = set(view_names(catalog)) if catalog.exists() else set()  # none: the runs stopped before it
    print(_summary(catalog, [a for a in assets_with_data(settings.store_root()) if a in views], dagster_home,
                   target.name))
    return 0


def _ui_command(dagster_home: Path) -> str:
    dagster, workspace = Path(sys.executable).parent / "dagster", REPO / "workspace.yaml"
    return f"DAGSTER_HOME={dagster_home} {dagster} dev -w {workspace} -h 127.0.0.1 -p 3000"


def _summary(catalog: Path, assets: list[str], dagster_home: Path, dataset: str = "*") -> str:
    """Where the outputs are, each asset's current rows (the asset views only: a derived view such
    as image_lineage is a join over every source record, seconds and most of a GB at COCO size)."""
    import duckdb

    counts = {}
    if assets:
        con = duckdb.connect(str(catalog), read_only=True)
        counts = {v: con.execute(f'SELECT count(*) FROM "{v}"').fetchall()[0][0] for v in assets}
        con.close()
    exports = sorted(settings.exports_root().glob(f"{dataset}/*/manifest.json"), key=lambda p: p.stat().st_mtime)
    lines = ["", "Done. Outputs (Parquet, one file per partition and version):", f"  {settings.store_root()}",
             "LLaVA export (JSON + Parquet + manifest; a new folder per content version):",
             f"  {exports[-1].parent if exports else '(none)'}",
             "Current rows per asset:"] + [f"  {v:<22} {n}" for v, n in sorted(counts.items())]
    lines += [
        "", "Query everything with DuckDB (views over the Parquet files; *_all views hold every version):",
        f"  {sys.executable} -c \"import duckdb; print(duckdb.connect('{catalog}', read_only=True)"
        ".sql('SELECT * FROM rejects_by_reason'))\"",
        "", "Open the Dagster UI (asset graph, runs, metadata) on http://127.0.0.1:3000 with `make ui`, i.e.:",
        f"  {_ui_command(dagster_home)}",
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


def viewer(args: argparse.Namespace) -> int:
    """The data viewer on 127.0.0.1 until interrupted: it only reads the store and the datasets."""
    import uvicorn

    from .viewer.app import create_app

    app = create_app(settings.store_root(), settings.datasets_root())
    print(f"viewer of {settings.store_root()} on http://127.0.0.1:{args.port} (Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    return 0


def check_setup(args: argparse.Namespace) -> int:
    from .setup_check import main as check

    return check([])


def _plan(args: argparse.Namespace, default: dict):
    from .lib.standin.faults import FaultPlan

    try:
        if args.faults is not None:
            return FaultPlan.parse(args.faults, args.fault_seed)
        return FaultPlan(default, args.fault_seed)
    except ValueError as e:
        raise SystemExit(f"visit-assets: --faults: {e}") from e


def stand_in(args: argparse.Namespace) -> int:
    """Serve the stand-in (a test instrument, never a model) until interrupted."""
    import signal
    import time

    # Stoppable whatever the parent ignored: ignored signals survive exec, and a parent that ran
    # Dagster in-process from a background shell has SIGTERM ignored (Dagster copies SIGINT's
    # disposition to SIGTERM), so a terminate() never reached the server.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    from .lib.standin import STAND_IN_MODEL
    from .lib.standin.server import StandInServer

    server = StandInServer(_plan(args, {}), port=args.port, tokens_per_s=args.tokens_per_s,
                           total_tokens_per_s=args.total_tokens_per_s, max_concurrency=args.max_concurrency,
                           log_path=args.log).start()
    print(f"stand-in (a TEST INSTRUMENT imitating a competent model; its rows are marked not real) on {server.base_url}\n"
          f"faults: {dict(server.plan.rates) or 'none'}; log: {args.log or 'GET /stand-in/log'}\n"
          f"point the product at it:\n  VISIT_LLM_BACKEND=openai VISIT_LLM_BASE_URLS={server.base_url} "
          f"VISIT_LLM_SERVED_MODEL={STAND_IN_MODEL}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


def rehearse(args: argparse.Namespace) -> int:
    """The sample through the stand-in, in its own home; prints each check's precision and recall."""
    from . import rehearsal

    home = Path(args.home) if args.home else settings.home() / "rehearsal"
    report = rehearsal.run(home, _plan(args, rehearsal.DEFAULT_FAULTS), log=lambda line: print(line, flush=True))
    print(rehearsal.summary(report, home))
    return 0


def loaders(args: argparse.Namespace) -> int:
    """Every metadata loader, built in or from a plugin (docs/loaders.md)."""
    from .lib.metadata.loaders import registry

    for loader in registry.available().values():
        print(f"{loader.name:21} {' '.join(loader.suffixes):16} {loader.origin:22} {loader.description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="visit-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run-sample", help="run the whole pipeline on the embedded sample dataset").set_defaults(fn=run_sample)
    r = sub.add_parser("run", help="run the whole graph, or the named assets, on a dataset folder, with progress",
                       description="Materialize every asset (or --assets) for a dataset folder, wave by wave, as "
                       "Dagster runs recorded in $DAGSTER_HOME (the UI shows them). The folder is linked into the "
                       "datasets root (VISIT_DATASETS), where the sensors look. See docs/user-guide.md.")
    r.add_argument("dataset", help="the dataset folder: images/ plus metadata files, optionally dataset.yaml")
    r.add_argument("--config", help="YAML: <asset>: {config}, resources: {llm: {...}}, env: {VISIT_*: value}")
    r.add_argument("--assets", help="comma-separated assets to materialize (default: all); their inputs must exist")
    r.add_argument("--copy", action="store_true", help="copy the folder into the datasets root instead of linking it")
    r.set_defaults(fn=run)
    sub.add_parser("catalog", help="rebuild the DuckDB catalog over the Parquet store").set_defaults(fn=catalog)
    sub.add_parser("loaders", help="list the metadata formats it reads (built in and plugins)").set_defaults(fn=loaders)
    d = sub.add_parser("diff", help="what changed between two dataset versions, and why (default: the last two)")
    d.add_argument("dataset")
    d.add_argument("--old", help="dataset version to compare from (default: the second most recent)")
    d.add_argument("--new", help="dataset version to compare to (default: the most recent)")
    d.add_argument("--examples", type=int, default=5, help="example items per kind of change")
    d.add_argument("--json", action="store_true", help="print the full result as JSON")
    d.set_defaults(fn=diff)
    v = sub.add_parser("viewer", help="browse the store in a web browser: datasets, images with their boxes, "
                       "conversations, rejects (read-only, on 127.0.0.1)")
    v.add_argument("--port", type=int, default=settings.VIEWER_PORT)
    v.set_defaults(fn=viewer)
    sub.add_parser("check-setup", help="load and exercise each native component (llama.cpp, embedder, torch), "
                   "each in its own process").set_defaults(fn=check_setup)
    for name, helptext in (("stand-in", "serve the stand-in model (a test instrument with planted faults) on 127.0.0.1"),
                           ("rehearse", "run the sample through the stand-in and score every filter against its faults")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--faults", help='fault rates, e.g. "unsupported=0.1,empty=0.05" (known: see docs/user-guide.md)')
        p.add_argument("--fault-seed", type=int, default=0, help="which requests get the faults (deterministic)")
        p.set_defaults(fn=stand_in if name == "stand-in" else rehearse)
        if name == "stand-in":
            p.add_argument("--port", type=int, default=8765)
            p.add_argument("--tokens-per-s", type=float, default=0.0, help="decode speed per request (0: instant)")
            p.add_argument("--total-tokens-per-s", type=float, default=0.0, help="decode speed of the server (0: unlimited)")
            p.add_argument("--max-concurrency", type=int, default=0, help="requests decoding at once (0: unlimited)")
            p.add_argument("--log", help="append every request, its fault and the truth to this JSONL file")
        else:
            p.add_argument("--home", help="where the rehearsal keeps its store and exports (default $VISIT_HOME/rehearsal)")
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())

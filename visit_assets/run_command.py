"""`visit-assets run <dataset folder> [--config run.yaml] [--assets a,b]`: a user's dataset through
the whole graph (or named assets) from the command line, as the same runs the UI makes.

These are checked before the first run starts: the folder (is it a
dataset the product can read?), the config file (known assets and resources, every key and type
checked against the job's config schema, known VISIT_* variables) and the asset names (known; the
inputs they need, made outside this command, exist).

The config file (YAML):

    generated_conversations: {max_iterations: 2}    # an asset name: its run config (ops.<asset>.config)
    selected_subset: {alpha_fraction: 0.5}
    resources:                                      # resources.<key>.config of every run
      llm: {backend: openai, base_urls: "http://gpu-1:8000/v1", served_model: my-model}
    env:                                            # VISIT_* variables set for this command
      VISIT_LLM_CONCURRENCY: 16

`ops:` in the launchpad's form (`ops: {<asset>: {config: {...}}}`) is accepted too.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE = Path(__file__).resolve().parent
SECTIONS = ("resources", "env", "ops")
ENV_NAME = re.compile(r"VISIT_[A-Z0-9_]*[A-Z0-9]")


class UsageError(Exception):
    """Something the user asked for cannot be done as asked: printed as is, nothing has run."""


@dataclass
class RunFile:
    ops: dict[str, dict] = field(default_factory=dict)  # asset name -> its config
    resources: dict[str, dict] = field(default_factory=dict)  # resource key -> its config
    env: dict[str, str] = field(default_factory=dict)  # VISIT_* -> value
    path: str = "the run config"

    def run_config(self) -> dict:
        """What every run gets besides its own ops' config."""
        return {"resources": {k: {"config": v} for k, v in self.resources.items()}} if self.resources else {}


# --- the config file ----------------------------------------------------------------------------

def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a mapping, got {type(value).__name__} {value!r}")
    return value


def known_env_names() -> set[str]:
    """Every VISIT_* variable the package reads (named in its source, or made per LLM role)."""
    from .defs.llm.resources import role_env_names

    names: set[str] = role_env_names()
    for path in PACKAGE.rglob("*.py"):
        names.update(ENV_NAME.findall(path.read_text(encoding="utf-8", errors="replace")))
    return names


def _env_value(name: str, value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise UsageError(f"{where}: {name} must be a string or a number, got {value!r}")


def load_run_file(path: str | Path) -> RunFile:
    """Read and check the shape of a run config file (names and values are checked by `check`)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UsageError(f"{path} is not valid YAML: {e}") from None
    data = _mapping(data, str(path))
    out = RunFile(path=str(path))
    for key, value in data.items():
        if not isinstance(key, str):
            raise UsageError(f"{path}: top-level key {key!r} must be an asset name or one of {', '.join(SECTIONS)}")
        if key == "resources":
            for name, cfg in _mapping(value, f"{path}: resources").items():
                out.resources[str(name)] = _mapping(cfg, f"{path}: resources.{name}")
        elif key == "env":
            known = known_env_names()
            for name, raw in _mapping(value, f"{path}: env").items():
                if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
                    raise UsageError(f"{path}: env may only set VISIT_* variables, not {name!r} (secrets such as "
                                     "API keys stay in your shell environment; LLMResource.api_key_env names one)")
                if name not in known:
                    close = difflib.get_close_matches(name, sorted(known), n=1)
                    raise UsageError(f"{path}: env: unknown variable {name}"
                                     f"{f' (did you mean {close[0]}?)' if close else ''}; the package reads: "
                                     f"{', '.join(sorted(known))} (docs/configuration.md)")
                out.env[name] = _env_value(name, raw, f"{path}: env")
        elif key == "ops":  # the launchpad's form
            for name, entry in _mapping(value, f"{path}: ops").items():
                entry = _mapping(entry, f"{path}: ops.{name}")
                extra = set(entry) - {"config"}
                if extra:
                    raise UsageError(f"{path}: ops.{name} may only hold 'config', got {', '.join(map(str, extra))}")
                out.ops[str(name)] = _mapping(entry.get("config"), f"{path}: ops.{name}.config")
        else:
            out.ops[key] = _mapping(value, f"{path}: {key}")
    return out


def _config_errors(error) -> str:
    lines = []
    for e in error.errors:
        message = e.message.split(" Expected: ")[0]  # the full schema follows; the name is what matters
        lines.append(f"  - {message}")
    return "\n".join(lines)


def _fields(step) -> dict:
    """The config fields of a step ({} when it takes no config)."""
    schema = step.config_schema
    return getattr(schema.config_type, "fields", None) or {} if schema is not None else {}


def check(defs, run_file: RunFile, only: list[str] | None) -> list[str] | None:
    """Check the config file and the asset names against the definitions; return the assets to
    materialize (None: all), with the assets their steps also make. Raises UsageError."""
    import dagster as dg
    from dagster._core.errors import DagsterInvalidConfigError

    from .runner import asset_names, did_you_mean, with_execution_sets

    known = asset_names(defs)
    where = run_file.path
    job = defs.resolve_implicit_global_asset_job_def()
    steps = {node.name: node.definition for node in job.graph.nodes}
    unknown = [n for n in run_file.ops if n not in known]
    if unknown:
        raise UsageError(f"{where}: unknown asset{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
                         f"{did_you_mean(unknown, known + list(SECTIONS))}.\n"
                         f"Assets: {', '.join(known)}.\nOther top-level keys: {', '.join(SECTIONS)}.")
    for name, cfg in run_file.ops.items():
        if name not in steps:
            step = defs.resolve_asset_graph().get(dg.AssetKey(name)).execution_set_asset_keys
            owner = next((n for n in sorted(k.to_user_string() for k in step) if n in steps), None)
            raise UsageError(f"{where}: {name} is made by the step of {owner}: put its config under {owner}" if owner
                             else f"{where}: {name} has no step of its own to configure")
        if cfg and not _fields(steps[name]):
            raise UsageError(f"{where}: asset {name} takes no config (got {', '.join(map(str, cfg))})")
    resources = sorted(k for k in job.resource_defs if k != "io_manager")
    located = {"store": "VISIT_STORE", "datasets": "VISIT_DATASETS"}
    for key in sorted(set(run_file.resources) & set(located)):
        raise UsageError(f"{where}: resources.{key}: give its root with env: {{{located[key]}: ...}} instead (the "
                         f"command places the dataset folder and reports the outputs from there)")
    unknown = [k for k in run_file.resources if k not in resources]
    if unknown:
        raise UsageError(f"{where}: unknown resource{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; resources: {', '.join(resources)}")
    full = {**run_file.run_config(),
            "ops": {n: {"config": c} for n, c in run_file.ops.items() if _fields(steps[n])}}
    try:
        dg.validate_run_config(job, full)
    except DagsterInvalidConfigError as e:
        raise UsageError(f"{where} does not fit the assets' config (docs/configuration.md lists every field):\n"
                         f"{_config_errors(e)}") from None
    if only is None:
        return None
    try:
        return with_execution_sets(defs, only)
    except ValueError as e:
        raise UsageError(f"--assets: {e}") from None


def parse_assets(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError("--assets needs at least one asset name (comma-separated)")
    return names


def missing_inputs(instance, defs, dataset: str, only: list[str] | None) -> list[str]:
    """For a partial run: the inputs of the named assets, made outside this command, that do not
    exist for this dataset yet (the run would fail on them), as 'parent (read by asset, ...)'."""
    import dagster as dg

    from .defs.waves import Records, partition_keys

    if only is None:
        return []
    graph = defs.resolve_asset_graph()
    records = Records(instance, graph, dataset)
    selected = {dg.AssetKey.from_user_string(n) for n in only}
    readers: dict[str, set[str]] = {}
    for key in selected:
        for parent in graph.get(key).parent_keys - selected:
            if not graph.get(parent).is_materializable:
                continue
            if not all(records.history(parent, ppk) for pk in partition_keys(graph.get(key).partitions_def, dataset)
                       for ppk in records.parent_partitions(parent, key, pk)):
                readers.setdefault(parent.to_user_string(), set()).add(key.to_user_string())
    return [f"{parent} (read by {', '.join(sorted(names))})" for parent, names in sorted(readers.items())]


# --- the dataset folder -------------------------------------------------------------------------

def check_dataset_folder(folder: str | Path):
    """The folder's layout, or a UsageError saying why the product cannot read it as a dataset."""
    from .lib.metadata.dataset import DATASET_NAME, MANIFEST, DatasetError, read_layout

    path = Path(folder).expanduser()
    hint = ("A dataset is a folder with an images/ folder and metadata files (COCO, LLaVA JSON, or JSONL / "
            "Parquet records), optionally a dataset.yaml; see docs/user-guide.md, 'Adding a dataset'.")
    if not path.exists():
        raise UsageError(f"{path} does not exist. {hint}")
    if not path.is_dir():
        raise UsageError(f"{path} is a file, not a dataset folder. {hint}")
    path = path.resolve()
    if not DATASET_NAME.fullmatch(path.name):
        raise UsageError(f"{path}: the folder name {path.name!r} cannot be a dataset name (it becomes a partition "
                         f"key, a path and a value in SQL): use letters, digits, '_', '.' and '-', starting with a "
                         f"letter or digit, at most 64 characters. Rename the folder.")
    try:
        layout = read_layout(path)
    except DatasetError as e:
        raise UsageError(f"{path} is not a readable dataset: {e}") from None
    if not layout.sources and not layout.imported:
        raise UsageError(f"{path} is not a dataset: no metadata files (.json, .jsonl or .parquet outside "
                         f"{layout.images_dir.name}/ and conversations/) and no {MANIFEST} listing sources. {hint}")
    if not layout.images_dir.is_dir():
        raise UsageError(f"{path} is not a dataset: no image folder {layout.images_dir.name}/ (image paths in the "
                         f"metadata are relative to it; {MANIFEST} `images:` names another). {hint}")
    return layout


def place_dataset(folder: Path, datasets_root: Path, copy: bool = False) -> tuple[Path, str]:
    """Make `folder` a dataset under `datasets_root`, where the sensors look: as it is when it is
    there already, else a symlink to it (edits to your folder are then what the sensors see), or a
    copy with `copy`. Refuses when another folder of that name is there. Returns (path, what was done)."""
    folder = folder.resolve()
    datasets_root = datasets_root.resolve()
    target = datasets_root / folder.name
    if folder.parent == datasets_root:
        return target, "in the datasets root"
    if target.exists() or target.is_symlink():
        if target.exists() and target.resolve() == folder:
            return target, f"already linked from {target}"
        real = f" (a link to {os.path.realpath(target)})" if target.is_symlink() else ""
        raise UsageError(
            f"another dataset named {folder.name!r} is already in the datasets root: {target}{real}. A dataset is "
            f"known by its folder name, so this one cannot be added as well: rename your folder, or remove {target} "
            f"if it is stale (its outputs stay in the store), or point VISIT_DATASETS at another root.")
    datasets_root.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copytree(folder, target, symlinks=True)
        return target, f"copied to {target}"
    target.symlink_to(folder, target_is_directory=True)
    return target, f"linked as {target}"

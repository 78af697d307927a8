"""The code location is the defs folder as Dagster loads it (visit_assets/definitions.py): every module
under visit_assets/defs is imported and whatever Dagster object sits at its top level is registered.
So an asset or sensor imported into a second module would be found twice, and nothing else may slip
in or out; and workspace.yaml must load it cleanly, as the dev server does, warnings included."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg

import visit_assets.defs
from visit_assets.definitions import defs

ROOT = Path(__file__).resolve().parents[1]


def _found_per_module() -> dict[str, dg.Definitions]:
    names = [visit_assets.defs.__name__] + [
        m.name for m in pkgutil.walk_packages(visit_assets.defs.__path__, f"{visit_assets.defs.__name__}.")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # the loader Dagster's defs folder uses, marked preview
        return {name: dg.load_definitions_from_module(importlib.import_module(name)) for name in names}


def _objects(found: dg.Definitions) -> list:
    return [*(found.assets or []), *(found.asset_checks or []), *(found.sensors or []), *(found.schedules or []),
            *(found.jobs or [])]


def test_each_dagster_object_is_found_in_one_module_only():
    where: dict[int, list[str]] = {}
    for name, found in _found_per_module().items():
        for obj in _objects(found):
            where.setdefault(id(obj), []).append(name)
    twice = sorted(modules for modules in where.values() if len(modules) > 1)
    assert not twice, f"found in more than one module (import the module, not the object): {twice}"


def test_the_location_is_exactly_what_the_defs_modules_define():
    found = dg.Definitions.merge(*_found_per_module().values())
    assert {k for a in found.assets for k in a.keys} == defs.resolve_asset_graph().get_all_asset_keys()
    assert {s.name for s in found.sensors} == {s.name for s in defs.sensors} == {
        "dataset_folder_sensor", "seed_file_sensor", "regenerate_downstream"}
    assert {s.name for s in found.schedules} == {s.name for s in defs.schedules} == {"nightly_reingest"}
    assert set(defs.resources) == {"store", "datasets", "llm", "clip", "embedder", "reward", "catalog", "io_manager"}


def test_workspace_yaml_loads_the_location_as_dagster_dev_does(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")  # an instance on purpose: its absence is logged as a warning
    out = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=ROOT, env={**os.environ, "DAGSTER_HOME": str(home)}, capture_output=True, text=True,
                         timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "Validation successful for code location visit_assets" in log, log[-3000:]
    assert "WARNING" not in log, log[-3000:]  # Dagster's log lines; Python's own read "...Warning:"

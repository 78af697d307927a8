"""The code location: Dagster loads every module of visit_assets/defs, so a new domain or sensor needs no entry here."""

import warnings
from functools import cache
from pathlib import Path

import dagster as dg

from . import defs as defs_package
from .resource_defaults import shared_resources


@cache  # one walk of the folder for the many build_defs() calls; the modules are imported once anyway
def _defs_folder() -> dg.Definitions:
    """load_from_defs_folder minus its pyproject lookup: none in a wheel; its one name fits laptop or cluster, not both."""
    with warnings.catch_warnings(action="ignore", category=dg.PreviewWarning):  # its per-module scan is "preview"
        return dg.ComponentTree.from_module(defs_module=defs_package, project_root=Path(__file__).parents[1]).build_defs()


def build_defs(**resources: dg.ConfigurableResource | dg.ConfigurableIOManager) -> dg.Definitions:
    """Every domain's definitions with the shared resources; keyword arguments replace resources (tests, profiles)."""
    return dg.Definitions.merge(_defs_folder(), dg.Definitions(resources=shared_resources(**resources)))


defs = build_defs()

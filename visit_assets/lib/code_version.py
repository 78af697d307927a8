"""Code versions from source text: a change to the logic of a stage changes its version, and
Dagster then marks that stage's assets stale (and every row records the version that made it)."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from types import ModuleType

from .. import __version__

PACKAGE = Path(__file__).resolve().parents[1]


def code_version(*modules: ModuleType, files: tuple[str, ...] = ()) -> str:
    """Hash of the modules' source and of packaged files (globs under visit_assets/, e.g. the
    prompt templates a stage renders): editing a prompt file changes its stage's version."""
    h = hashlib.blake2b(__version__.encode(), digest_size=6)
    for module in sorted(modules, key=lambda m: m.__name__):
        h.update(module.__name__.encode())
        h.update(inspect.getsource(module).encode())
    for path in sorted({p for pattern in files for p in PACKAGE.glob(pattern)}):
        h.update(path.relative_to(PACKAGE).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()

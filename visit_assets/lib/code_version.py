"""Code versions from source text: a change to the logic of a stage changes its version, and
Dagster then marks that stage's assets stale (and every row records the version that made it)."""

from __future__ import annotations

import hashlib
import inspect
from types import ModuleType

from .. import __version__


def code_version(*modules: ModuleType) -> str:
    h = hashlib.blake2b(__version__.encode(), digest_size=6)
    for module in sorted(modules, key=lambda m: m.__name__):
        h.update(module.__name__.encode())
        h.update(inspect.getsource(module).encode())
    return h.hexdigest()

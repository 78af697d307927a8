"""Environment variables set for the duration of a block, then restored (set or unset) as they were."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """`env` wins over what is set; on exit every name is back as it was, unset ones unset."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

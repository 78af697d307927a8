"""CPU counting and torch thread control for the model wrappers.

torch's OpenMP threads busy-wait between ops. On a host whose cores other processes also use, that
spinning can cost several-fold; export OMP_WAIT_POLICY=PASSIVE before the process starts (it is
read when torch loads, so library code cannot set it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def torch_num_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to `n` (None/0: leave it), then restore."""
    import torch

    if not n or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)

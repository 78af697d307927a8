"""Batches of prepared images, decoded ahead of the model: a thread pool or a torch DataLoader.

Either way the next batch is being decoded while the model runs on the current one
(bench/clip_throughput.py compares them). Batches come back in order, as (start index, items),
each item `ImagePrep.item`'s (prepared image, error) pair.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal, get_args

from visit_assets.lib.models.image_prep import ImagePrep, ImageSource
from visit_assets.lib.models.threads import usable_cpus

Loader = Literal["threads", "dataloader"]  # how images are decoded (ClipResource.loader)
LOADERS: tuple[str, ...] = get_args(Loader)

Batch = tuple[int, list[tuple[Any, str | None]]]


def default_decode_workers() -> int:
    # 2 on small machines (measured on 2 cores: 2 beat 1 by ~5-10%, as one worker gets too small
    # a share next to torch's threads), up to 8 for GPU hosts
    return max(2, min(8, usable_cpus() // 2))


def batches_threads(paths: Sequence[ImageSource], prep: ImagePrep, batch_size: int, num_workers: int) -> Iterator[Batch]:
    """Thread-pool decoding, two batches in flight; num_workers=0 decodes synchronously."""
    bs = batch_size
    starts = list(range(0, len(paths), bs))
    if num_workers == 0:  # synchronous: no overlap (reference / debugging)
        for s in starts:
            yield s, [prep.item(p) for p in paths[s : s + bs]]
        return
    with ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="clip-decode") as pool:
        window: deque[tuple[int, list[Future]]] = deque()
        todo = iter(starts)

        def submit_next() -> None:
            s = next(todo, None)
            if s is not None:
                window.append((s, [pool.submit(prep.item, p) for p in paths[s : s + bs]]))

        for _ in range(2):  # current batch + the next one decoding while the model runs
            submit_next()
        while window:
            s, futures = window.popleft()
            results = [f.result() for f in futures]
            submit_next()
            yield s, results


class _ImageDataset:
    """Map-style dataset for the DataLoader path (module level so worker processes can use it)."""

    def __init__(self, paths: Sequence[ImageSource], prep: ImagePrep) -> None:
        self.paths = list(paths)
        self.prep = prep

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Any, str | None]:
        return self.prep.item(self.paths[i])


def _collate_keep(items: list) -> list:
    return items


def batches_dataloader(paths: Sequence[ImageSource], prep: ImagePrep, batch_size: int, num_workers: int) -> Iterator[Batch]:
    """torch DataLoader decoding in `num_workers` worker processes (0: in this process)."""
    from torch.utils.data import DataLoader

    dl = DataLoader(
        _ImageDataset(paths, prep),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate_keep,
        prefetch_factor=2 if num_workers > 0 else None,
    )
    s = 0
    for items in dl:
        yield s, items
        s += len(items)


BATCHERS = {"threads": batches_threads, "dataloader": batches_dataloader}

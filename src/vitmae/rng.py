"""The generator for random draws inside a training step (MAE masking, drop-path).

None, torch's default generator, unless the current thread has its own: a sharded step
(`vitmae.shards`) runs each shard in a worker thread with a generator seeded from the default
one, so that the shards' draws do not interleave in whatever order the threads happen to run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_local = threading.local()


def generator() -> torch.Generator | None:
    """This thread's generator, or None (torch's default)."""
    return getattr(_local, "generator", None)


@contextmanager
def use(gen: torch.Generator) -> Iterator[None]:
    """Random draws of vitmae's models in this thread come from `gen` inside the block."""
    previous, _local.generator = generator(), gen
    try:
        yield
    finally:
        _local.generator = previous

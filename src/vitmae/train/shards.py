"""Data parallelism across CPU threads in one process (`run.shards`).

On a few CPU cores the matrix products of a small ViT are too small to split well across
intra-op threads: on 2 cores, one thread per copy of the model does more work than two
threads on one (the same finding as 2 processes of 1 thread against 1 of 2, without
torchrun). So each batch is cut into N contiguous shards, and N worker threads run the task's
step on one shard each with one intra-op thread (torch releases the GIL inside its kernels).
The shard losses are weighted by shard size, as one mean over the batch (exactly so when every
sample weighs the same in the task's loss; with void pixels, each shard's mean over its own
valid pixels, as DDP averages its ranks' means); their gradients come
back from `torch.autograd.grad` and are added into `.grad` in shard order, so the result does
not depend on which thread finishes first. Random draws inside the step come from a generator
per shard, seeded from torch's default one and passed to `task.train_step(model, shard,
generator)`: a seeded run repeats exactly, and a resumed one continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import torch
import torch.nn as nn

from vitmae.errors import ConfigError


def split_batch(batch: Sequence[torch.Tensor], n: int) -> list[list[torch.Tensor]]:
    """A batch of tensors (B, ...) -> n shards of contiguous samples (as torch.tensor_split)."""
    parts = [torch.tensor_split(t, n) for t in batch]
    return [[p[i] for p in parts] for i in range(n)]


class ShardedStep:
    """`step(task, model, batch, scale, context)`: forward and backward of `task.train_step`
    on `n` shards in parallel, gradients (times `scale`) accumulated into `.grad`; returns
    the batch's loss and metrics as the sample-weighted means of the shards'."""

    def __init__(self, n: int):
        if n < 2:
            raise ValueError(f"run.shards: a sharded step needs >= 2 shards, got {n}")
        self.n = n
        self.pool = ThreadPoolExecutor(n, thread_name_prefix="vitmae-shard")

    def step(self, task, model: nn.Module, batch: Sequence[torch.Tensor], scale: float,
             context: Callable[[], AbstractContextManager]) -> tuple[float, dict]:
        B = batch[0].shape[0]
        if B < self.n:
            raise ConfigError(f"run.shards={self.n}: a batch of {B} images cannot be cut into "
                              f"{self.n} shards; lower run.shards or raise data.batch_size")
        params = [p for p in model.parameters() if p.requires_grad]
        seeds = torch.randint(0, 2**62, (self.n,)).tolist()  # from the default generator
        shards = split_batch(batch, self.n)

        def run(shard: list[torch.Tensor], seed: int):
            torch.set_num_threads(1)  # this worker's only: the caller keeps its own
            weight = shard[0].shape[0] / B
            with context():
                loss, metrics = task.train_step(model, shard, torch.Generator().manual_seed(seed))
            grads = torch.autograd.grad(loss * (weight * scale), params, allow_unused=True)
            return weight, loss.item(), metrics, grads

        results = list(self.pool.map(run, shards, seeds))  # in shard order
        weights, losses, metrics, grads = zip(*results, strict=True)
        for p, shard_grads in zip(params, zip(*grads, strict=True), strict=True):
            present = [g for g in shard_grads if g is not None]
            if present:
                total = present[0]
                for g in present[1:]:
                    total = total + g  # out of place: never write into autograd's outputs
                p.grad = total if p.grad is None else p.grad.add_(total)
        loss = sum(w * v for w, v in zip(weights, losses, strict=True))
        means = {k: sum(w * m[k] for w, m in zip(weights, metrics, strict=True))
                 for k in metrics[0]}
        return loss, means

    def close(self) -> None:
        self.pool.shutdown()

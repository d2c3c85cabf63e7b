"""How one micro-batch trains, chosen once per run: on one process, over DDP ranks, or on CPU
threads (`vitmae.train.shards`).

A step strategy is a context manager (its teardown runs in `with`, whatever happens in the
loop) and a callable `step(task, batch, last_micro) -> (loss, {name: float})`: the forward
pass of `task.train_step(model, batch, generator)` under autocast, the backward pass of
loss / accum_iter into `.grad`, and the non-finite check: a NaN or infinite loss raises
`NonFiniteLoss` before the optimizer step, so the weights never take it in (on one process and
under DDP before the backward pass; on threads after the shards' backward passes, which have
only written `.grad`). Under DDP the gradients of every micro-batch but
an optimizer step's last stay local (`no_sync`), as MAE's `train_one_epoch`.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn

from vitmae import distributed as dist
from vitmae.config import ConfigError, RunConfig
from vitmae.train.shards import ShardedStep


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite."""


class NonFiniteLoss(DivergenceError):
    """A step's loss is NaN or infinite (the loop adds where and when)."""

    def __init__(self, loss: float):
        super().__init__(f"loss is {loss}")
        self.loss = loss


def autocast(device: torch.device, amp: str):
    """bf16 on CUDA by default; fp32 on CPU (bf16 is slower on CPUs without bf16 units)."""
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not use:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class PlainStep:
    """One process: forward, then backward of loss / accum into `.grad`."""

    def __init__(self, model: nn.Module, device: torch.device, amp: str, accum: int):
        self.model, self.device, self.amp, self.accum = model, device, amp, accum

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def sync(self, last_micro: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def __call__(self, task, batch, last_micro: bool) -> tuple[float, dict]:
        with self.sync(last_micro):
            with autocast(self.device, self.amp):
                # None: random draws come from torch's default generator, seeded per rank
                loss, metrics = task.train_step(self.model, batch, None)
            value = loss.item()
            if not math.isfinite(value):
                raise NonFiniteLoss(value)
            (loss / self.accum).backward()
        return value, metrics


class DDPStep(PlainStep):
    """DDP ranks: the model is wrapped once; gradients are all-reduced at an optimizer step's
    last micro-batch only."""

    def __init__(self, model: nn.Module, device: torch.device, amp: str, accum: int):
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        super().__init__(ddp, device, amp, accum)
        self.ddp = ddp

    def sync(self, last_micro: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if last_micro else self.ddp.no_sync()


class ThreadedStep(PlainStep):
    """One process on a CPU, the batch cut into `shards` run on worker threads; each shard's
    random draws come from its own generator (`vitmae.train.shards.ShardedStep`)."""

    def __init__(self, model: nn.Module, device: torch.device, amp: str, accum: int,
                 shards: int):
        if dist.is_distributed() or device.type != "cpu":
            raise ConfigError(f"run.shards={shards}: sharding is for one process on a CPU, got "
                             f"{dist.world_size()} processes on {device.type}; set run.shards=1")
        super().__init__(model, device, amp, accum)
        self.sharded = ShardedStep(shards)

    def close(self) -> None:
        self.sharded.close()

    def __call__(self, task, batch, last_micro: bool) -> tuple[float, dict]:
        value, metrics = self.sharded.step(task, self.model, batch, 1 / self.accum,
                                           lambda: autocast(self.device, self.amp))
        if not math.isfinite(value):
            raise NonFiniteLoss(value)
        return value, metrics


def make_step(model: nn.Module, device: torch.device, run_cfg: RunConfig,
              accum: int) -> PlainStep:
    """The strategy for this process: DDP under torchrun, threads with run.shards > 1, else
    plain; with run.compile the (wrapped) model is compiled."""
    if run_cfg.shards > 1:
        step = ThreadedStep(model, device, run_cfg.amp, accum, run_cfg.shards)
    elif dist.is_distributed():
        step = DDPStep(model, device, run_cfg.amp, accum)
    else:
        step = PlainStep(model, device, run_cfg.amp, accum)
    if run_cfg.compile:
        step.model = torch.compile(step.model)
    return step

"""The training loop's checkpointer: what a checkpoint of a run holds, and resuming from one.

A save holds the weights, the optimizer, the loop's position (`Progress`), the running
averages not yet logged, every RNG state and the size of `metrics.jsonl`, so that a resumed
run repeats the records and the weights of an uninterrupted one bit for bit. The files are
written by `vitmae.runs.checkpoint` (atomic, verified, the last `keep_last` kept) on rank 0; the
other ranks wait at a barrier. A save refuses non-finite weights, so that a good checkpoint
is never replaced by a diverged one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from vitmae import distributed as dist
from vitmae.runs.checkpoint import (
    CheckpointError,
    checkpoint_dir,
    load_state,
    read_weights,
    remove_partial_saves,
    rng_state,
    save_checkpoint,
    set_rng_state,
    unwrap,
)
from vitmae.runs.folder import RunDir
from vitmae.train.steps import DivergenceError


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps done


class Checkpointer:
    """`save(prog, meter)` writes ckpt-<step>/ of `run`; `resume(ckpt)` restores one;
    `last` is the newest checkpoint of this run (None before the first save)."""

    def __init__(self, run: RunDir, model: nn.Module, optimizer: torch.optim.Optimizer,
                 config: dict, keep_last: int):
        self.run, self.model, self.optimizer = run, model, optimizer
        self.config, self.keep_last = config, keep_last
        self.last: Path | None = None

    def resume(self, ckpt: Path, log=print) -> tuple[Progress, dict]:
        """Load `ckpt` into the model, the optimizer and the RNGs; truncate the records to
        what it had seen -> (progress, the running averages it held)."""
        state = load_state(ckpt)
        unwrap(self.model).load_state_dict(read_weights(ckpt / "model.safetensors"))
        self.optimizer.load_state_dict(state["optimizer"])
        ranks = state.get("rng_ranks", [state["rng"]])  # one state per rank (seed + rank)
        if len(ranks) != dist.world_size():
            log(f"{ckpt}: saved by {len(ranks)} process(es), resumed by {dist.world_size()}: "
                f"each process restarts from the first one's random state, so random draws "
                f"(augmentation, drop-path) differ from an uninterrupted run")
        set_rng_state(ranks[dist.rank()] if len(ranks) == dist.world_size() else ranks[0])
        self.run.truncate_metrics(state["metrics_size"])
        if dist.is_main():
            for partial in remove_partial_saves(self.run.path):
                log(f"removed {partial.name}: a checkpoint save that was interrupted")
        self.last = ckpt
        prog = Progress(**state["progress"])
        log(f"resumed from {ckpt} at epoch {prog.epoch}, batch {prog.batch}, step {prog.step}")
        return prog, state["meter"]

    def save(self, prog: Progress, meter: dict) -> Path:
        """Write the checkpoint of `prog.step` (rank 0) and wait for it (every rank)."""
        self._check_finite(prog)
        rngs = dist.gather_objects(rng_state())  # each rank draws from its own (seed + rank)
        if dist.is_main():
            state = {"optimizer": self.optimizer.state_dict(), "progress": vars(prog).copy(),
                     "meter": dict(meter), "rng": rngs[0], "rng_ranks": rngs,
                     "metrics_size": self.run.metrics_size()}
            try:
                save_checkpoint(self.run.path, prog.step, self.model, state, self.config,
                                self.keep_last)
            except CheckpointError as e:  # stop: going on would risk more unsaved work
                raise CheckpointError(f"{e}. Stopped at step {prog.step}; free space or fix the "
                                      f"folder, then resume with: --resume {self.run.path}") from e
        dist.barrier()
        self.last = checkpoint_dir(self.run.path, prog.step)
        return self.last

    def _check_finite(self, prog: Progress) -> None:
        """Raise DivergenceError if any weight is NaN or infinite (a finite loss can still
        step into them)."""
        for name, t in unwrap(self.model).state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise DivergenceError(
                    f"weight {name} is not finite after step {prog.step} (epoch {prog.epoch}); "
                    f"no checkpoint written; last good checkpoint: {self.last or 'none'}. "
                    "Lower the lr or raise warmup_epochs.")

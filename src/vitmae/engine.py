"""The training engine: one task-agnostic loop for pretraining, classification and segmentation.

Like minGPT's trainer it "has nothing to do with" the model: a task supplies the step and the
evaluator (`vitmae.tasks`). The loop does gradient accumulation, clipping, bf16 autocast on
CUDA, data parallelism over DDP (`no_sync` between accumulation steps) or CPU threads
(`vitmae.shards`), the lr schedule per iteration (MAE), logging to `metrics.jsonl`, verified
checkpoints, exact mid-epoch resume, a clean stop on SIGTERM / Ctrl-C, and a stop with a clear
message when the loss is not finite. After each epoch's evaluation it calls the monitors the
runner passes (`monitor(model, epoch) -> {name: value}`, e.g. `vitmae.monitors`), whatever
they measure.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from vitmae import distributed as dist
from vitmae.checkpoint import (
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
from vitmae.config import DataConfig, OptimConfig, RunConfig
from vitmae.data.loader import batches_per_epoch, make_loader
from vitmae.optim import lr_at, set_lr
from vitmae.runs import RunDir
from vitmae.shards import ShardedStep


class DivergenceError(RuntimeError):
    """The loss became NaN or infinite."""


class Interrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was written. `.signum` says which."""

    def __init__(self, msg: str, signum: int):
        super().__init__(msg)
        self.signum = signum


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer steps done


def autocast(device: torch.device, amp: str):
    """bf16 on CUDA by default; fp32 on CPU (bf16 is slower on CPUs without bf16 units)."""
    use = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if not use:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


def evaluate(model: nn.Module, task, dataset, batch_size: int, device: torch.device,
             num_workers: int = 0, amp: str = "auto") -> dict:
    """The task's metrics over `dataset`, exact across any number of ranks."""
    return run_evaluator(model, task, dataset, batch_size, device, num_workers, amp).result()


@torch.no_grad()
def run_evaluator(model: nn.Module, task, dataset, batch_size: int, device: torch.device,
                  num_workers: int = 0, amp: str = "auto", evaluator=None):
    """Feed `dataset` (sharded over ranks) to `evaluator` (default: the task's); its sums
    are reduced."""
    was_training = model.training
    model.eval()
    ev = task.evaluator() if evaluator is None else evaluator
    loader = make_loader(dataset, batch_size, train=False, num_workers=num_workers)
    with autocast(device, amp):
        for batch in loader:
            ev.update(model, to_device(batch, device))
    for key, value in ev.sums.items():
        ev.sums[key] = dist.all_reduce_sum(value.to(device)).cpu()
    model.train(was_training)
    return ev


class StopFlag:
    """Records SIGTERM / SIGINT so that the loop can finish its step and checkpoint."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}
        self._pid = os.getpid()

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a forked DataLoader worker: Ctrl-C reaches the whole
            return  # process group, and the main process stops the loader cleanly
        if self.signum is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nreceived {signal.Signals(signum).name}: finishing the current step, "
              "then writing a checkpoint", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)


def fit(model: nn.Module, task, optimizer: torch.optim.Optimizer, base_lr: float,
        optim_cfg: OptimConfig, train_set, val_set, data_cfg: DataConfig, run_cfg: RunConfig,
        run: RunDir, device: torch.device, config: dict, resume: Path | None = None,
        log=print, monitors: Sequence[Callable[[nn.Module, int], dict]] = ()) -> dict:
    """Train `model` on `task` for optim_cfg.epochs; returns the last evaluation's metrics."""
    B, accum = data_cfg.batch_size, optim_cfg.accum_iter
    n_batches = batches_per_epoch(train_set, B)
    if n_batches < accum:
        raise ValueError(f"data.batch_size={B} x {accum} accumulation steps needs at least "
                         f"{B * accum * dist.world_size()} training images, got {len(train_set)}")
    n_batches -= n_batches % accum  # whole optimizer steps only
    train_model = model
    if dist.is_distributed():
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if run_cfg.compile:
        train_model = torch.compile(train_model)
    sharded = None
    if run_cfg.shards > 1:
        if dist.is_distributed() or device.type != "cpu":
            raise ValueError(f"run.shards={run_cfg.shards}: sharding is for one process on a "
                             f"CPU, got {dist.world_size()} processes on {device.type}; "
                             "set run.shards=1")
        sharded = ShardedStep(run_cfg.shards)

    prog, meter, metrics = Progress(), {}, {}
    named: set[str] = set()  # files that data.skip_bad skipped, already named in the log
    if resume is not None:
        state = load_state(resume)
        unwrap(model).load_state_dict(read_weights(resume / "model.safetensors"))
        optimizer.load_state_dict(state["optimizer"])
        prog = Progress(**state["progress"])
        meter = state["meter"]
        set_rng_state(state["rng"])
        run.truncate_metrics(state["metrics_size"])
        if dist.is_main():
            for partial in remove_partial_saves(run.path):
                log(f"removed {partial.name}: a checkpoint save that was interrupted")
        log(f"resumed from {resume} at epoch {prog.epoch}, batch {prog.batch}, step {prog.step}")

    last_ckpt: Path | None = resume

    def checkpoint() -> Path | None:
        nonlocal last_ckpt
        _check_finite(model, prog, last_ckpt)  # never replace a good checkpoint by NaNs
        if dist.is_main():
            state = {"optimizer": optimizer.state_dict(), "progress": vars(prog).copy(),
                     "meter": dict(meter), "rng": rng_state(),
                     "metrics_size": run.metrics_size()}
            try:
                last_ckpt = save_checkpoint(run.path, prog.step, model, state, config,
                                            run_cfg.keep_last)
            except CheckpointError as e:  # stop: going on would risk more unsaved work
                raise CheckpointError(f"{e}. Stopped at step {prog.step}; free space or fix "
                                      f"the folder, then resume with: --resume {run.path}") from e
        dist.barrier()
        if not dist.is_main():
            last_ckpt = checkpoint_dir(run.path, prog.step)
        return last_ckpt

    model.train()
    with StopFlag() as stop:
        while prog.epoch < optim_cfg.epochs:
            loader = make_loader(train_set, B, train=True, seed=run_cfg.seed, epoch=prog.epoch,
                                 start_batch=prog.batch, num_workers=data_cfg.num_workers,
                                 pin_memory=device.type == "cuda")
            bar = tqdm(total=n_batches, initial=prog.batch, desc=f"epoch {prog.epoch}",
                       disable=not dist.is_main(), leave=False, mininterval=2.0,
                       file=sys.stderr, dynamic_ncols=True)
            t0 = time.perf_counter()
            for batch in loader:
                if prog.batch >= n_batches:
                    break
                if prog.batch % accum == 0:  # a step's lr is read at its first micro-batch (MAE)
                    lr = lr_at(prog.epoch + prog.batch / n_batches, base_lr, optim_cfg)
                    set_lr(optimizer, lr)
                batch = to_device(batch, device)
                last_micro = (prog.batch + 1) % accum == 0
                sync = contextlib.nullcontext() if last_micro or not dist.is_distributed() \
                    else train_model.no_sync()
                with sync:
                    if sharded is not None:  # forward and backward on CPU threads
                        loss_value, step_metrics = sharded.step(
                            task, train_model, batch, 1 / accum,
                            lambda: autocast(device, run_cfg.amp))
                    else:
                        with autocast(device, run_cfg.amp):
                            loss, step_metrics = task.train_step(train_model, batch)
                        loss_value = loss.item()
                        if math.isfinite(loss_value):
                            (loss / accum).backward()
                if not math.isfinite(loss_value):
                    raise DivergenceError(
                        f"loss is {loss_value} at step {prog.step} (epoch {prog.epoch}, "
                        f"batch {prog.batch}), lr {lr:.3g}; last good checkpoint: "
                        f"{last_ckpt or 'none'}. Lower the lr or raise warmup_epochs.")
                _meter_add(meter, loss=loss_value, n=batch[0].shape[0], **step_metrics)
                prog.batch += 1
                if last_micro:
                    if optim_cfg.clip_grad:
                        nn.utils.clip_grad_norm_(model.parameters(), optim_cfg.clip_grad)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    prog.step += 1
                    if prog.step % run_cfg.log_interval == 0:
                        elapsed = time.perf_counter() - t0
                        rec = _meter_record(meter, prog, lr, elapsed, device)
                        run.log(rec)
                        bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}",
                                        img_s=f"{rec['img_s']:.0f}")
                        meter.clear()
                        t0 = time.perf_counter()
                    if run_cfg.ckpt_interval and prog.step % run_cfg.ckpt_interval == 0 \
                            and prog.batch < n_batches:
                        checkpoint()
                    if dist.any_rank(stop.signum is not None, device):
                        path = checkpoint()
                        signum = stop.signum or signal.SIGTERM
                        raise Interrupted(
                            f"stopped by {signal.Signals(signum).name} at step {prog.step}; "
                            f"checkpoint written to {path}. Resume with: --resume {run.path}",
                            signum)
                bar.update(1)
            bar.close()
            prog.epoch, prog.batch = prog.epoch + 1, 0
            _report_skipped(train_set, "train", prog, run, log, named)
            if val_set is not None and (prog.epoch % run_cfg.eval_interval == 0
                                        or prog.epoch == optim_cfg.epochs):
                metrics = evaluate(model, task, val_set, B, device, data_cfg.num_workers,
                                   run_cfg.amp)
                _report_skipped(val_set, "val", prog, run, log, named)
                run.log({"epoch": prog.epoch, "step": prog.step, "split": "val", **metrics})
                log(f"epoch {prog.epoch}: " + _summary(metrics))
            _monitor(monitors, model, prog, device, run, log)
            checkpoint()
    if sharded is not None:
        sharded.close()
    return metrics


def _monitor(monitors: Sequence[Callable[[nn.Module, int], dict]], model: nn.Module,
             prog: Progress, device: torch.device, run: RunDir, log) -> None:
    """Run the monitors on rank 0 (the other ranks wait at the checkpoint's barrier), in eval
    mode and under a forked RNG so that they never change the training; log what they return
    as one record."""
    if not monitors or not dist.is_main():
        return
    rec: dict = {}
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for monitor in monitors:
            rec.update(monitor(model, prog.epoch))
    model.train(was_training)
    if rec:
        run.log({"epoch": prog.epoch, "step": prog.step, "split": "monitor", **rec})
        log(f"epoch {prog.epoch}: " + _summary(rec))


def _check_finite(model: nn.Module, prog: Progress, last_ckpt: Path | None) -> None:
    """Raise DivergenceError if any weight is NaN or infinite (a finite loss can still step
    into them); called before every save so that a good checkpoint is never replaced."""
    for name, t in unwrap(model).state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise DivergenceError(
                f"weight {name} is not finite after step {prog.step} (epoch {prog.epoch}); "
                f"no checkpoint written; last good checkpoint: {last_ckpt or 'none'}. "
                "Lower the lr or raise warmup_epochs.")


def _report_skipped(dataset, split: str, prog: Progress, run: RunDir, log,
                    named: set[str]) -> None:
    """Log and record the files `data.skip_bad` skipped in `dataset` since the last call
    (`take_skipped() -> [(path, reason)]`, see `vitmae.data.skip`): each file is named with
    its reason the first time (`named` holds those already named), counted every epoch."""
    take = getattr(dataset, "take_skipped", None)
    skipped = take() if take is not None else []
    if not skipped:
        return
    new = [(p, r) for p, r in skipped if p not in named]
    named.update(p for p, _ in new)
    for p, reason in new[:10]:
        log(f"skipped {p}: {reason}")
    more = f"; {len(new) - 10} more are named in metrics.jsonl" if len(new) > 10 else ""
    files = "file" if len(skipped) == 1 else "files"
    log(f"epoch {prog.epoch}: skipped {len(skipped)} bad {files} in {split} "
        f"(data.skip_bad){more}")
    run.log({"epoch": prog.epoch, "step": prog.step, "split": split,
             "skipped_files": len(skipped), "skipped": [p for p, _ in skipped]})


def _meter_add(meter: dict, n: int, **values: float) -> None:
    meter["n"] = meter.get("n", 0) + n
    meter["batches"] = meter.get("batches", 0) + 1
    for k, v in values.items():
        meter[k] = meter.get(k, 0.0) + v


def _meter_record(meter: dict, prog: Progress, lr: float, elapsed: float,
                  device: torch.device) -> dict:
    batches = max(meter.get("batches", 1), 1)
    rec = {"epoch": prog.epoch, "step": prog.step, "split": "train", "lr": lr}
    rec.update({k: v / batches for k, v in meter.items() if k not in ("n", "batches")})
    rec["img_s"] = meter.get("n", 0) * dist.world_size() / max(elapsed, 1e-9)
    rec["peak_mem_mb"] = peak_memory_mb(device)
    return rec


def _summary(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))

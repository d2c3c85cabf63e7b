"""The training engine: one task-agnostic loop for pretraining, classification and segmentation.

Like minGPT's trainer it "has nothing to do with" the model: a task supplies the step and the
evaluator (`vitmae.tasks`). `fit` is the loop of MAE's `train_one_epoch` over small objects:
the step strategy chosen once for this process (`vitmae.train.steps`: plain, DDP with `no_sync`
between accumulation steps, or CPU threads; autocast, backward and the non-finite check), the
checkpointer (`vitmae.train.checkpointer`: verified saves, exact mid-epoch resume) and the stop flag
(a clean stop on SIGTERM / Ctrl-C). The loop itself does gradient accumulation, clipping, the
lr schedule per iteration (MAE) and logging to `metrics.jsonl`. After each epoch's evaluation
it calls the monitors the runner passes (`monitor(model, epoch) -> {name: value}`, e.g.
`vitmae.train.monitors`), whatever they measure; a new run calls them with epoch 0 before
its first step too, so that the record shows what the starting weights measure (what a run
from pretrained weights keeps or loses); a monitor with nothing to say there returns {}.
"""

from __future__ import annotations

import itertools
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from vitmae import distributed as dist
from vitmae.config import DataConfig, OptimConfig, RunConfig
from vitmae.data.loader import batches_per_epoch, make_loader
from vitmae.errors import ConfigError
from vitmae.runs.folder import RunDir
from vitmae.train.best import BEST, BestEpoch
from vitmae.train.checkpointer import Checkpointer, Progress
from vitmae.train.optim import lr_at, set_lr
from vitmae.train.steps import DivergenceError, NonFiniteLoss, autocast, make_step
from vitmae.train.stop import Interrupted, StopFlag

__all__ = ["DivergenceError", "Interrupted", "evaluate", "fit", "run_evaluator"]


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


def run_evaluator(model: nn.Module, task, dataset, batch_size: int, device: torch.device,
                  num_workers: int = 0, amp: str = "auto", evaluator=None):
    """Feed `dataset` (sharded over ranks) to `evaluator` (default: the task's); its sums
    are reduced."""
    # no_grad as a block, not a decorator: mutation testing (mutmut) skips decorated functions
    was_training = model.training
    model.eval()
    ev = task.evaluator() if evaluator is None else evaluator
    loader = make_loader(dataset, batch_size, train=False, num_workers=num_workers)
    with torch.no_grad(), autocast(device, amp):
        for batch in loader:
            ev.update(model, to_device(batch, device))
    for key, value in ev.sums.items():
        ev.sums[key] = dist.all_reduce_sum(value.to(device)).cpu()
    model.train(was_training)
    return ev


def fit(model: nn.Module, task, optimizer: torch.optim.Optimizer, base_lr: float,
        optim_cfg: OptimConfig, train_set, val_set, data_cfg: DataConfig, run_cfg: RunConfig,
        run: RunDir, device: torch.device, config: dict, resume: Path | None = None,
        log=print, monitors: Sequence[Callable[[nn.Module, int], dict]] = (),
        best_by: str | None = None) -> dict:
    """Train `model` on `task` for optim_cfg.epochs; returns the last evaluation's metrics.
    With `best_by`, the weights of the epoch with the best validation `best_by` are kept in
    RUN/best (`vitmae.train.best`)."""
    B, accum = data_cfg.batch_size, optim_cfg.accum_iter
    n_batches = _whole_steps(train_set, B, accum)
    ckpt = Checkpointer(run, model, optimizer, config, run_cfg.keep_last)
    prog, meter = ckpt.resume(resume, log) if resume is not None else (Progress(), {})
    best = BestEpoch(run, best_by) if best_by else None  # after resume: its records
    metrics, lr = {}, 0.0
    spent = 0.0  # training-loop seconds of earlier epochs since the last train record
    named: set[str] = set()  # files that data.skip_bad skipped, already named in the log
    model.train()
    if prog.step == 0 and prog.batch == 0:  # a new run: what the starting weights measure
        _monitor(monitors, model, prog, device, run, log)
    try:
        with make_step(model, device, run_cfg, accum) as step, StopFlag() as stop:
            while prog.epoch < optim_cfg.epochs:
                loader = make_loader(train_set, B, train=True, seed=run_cfg.seed,
                                     epoch=prog.epoch, start_batch=prog.batch,
                                     num_workers=data_cfg.num_workers,
                                     pin_memory=device.type == "cuda")
                bar, t0 = _bar(n_batches, prog), time.perf_counter()
                for batch in itertools.islice(loader, n_batches - prog.batch):
                    if prog.batch % accum == 0:  # a step's lr is read at its first micro-batch
                        at = prog.epoch + prog.batch / n_batches
                        lr = lr_at(at, base_lr, optim_cfg)
                        set_lr(optimizer, lr, at)
                    last_micro = (prog.batch + 1) % accum == 0
                    loss, step_metrics = step(task, to_device(batch, device), last_micro)
                    _meter_add(meter, loss=loss, n=batch[0].shape[0], **step_metrics)
                    prog.batch += 1
                    bar.update(1)
                    if not last_micro:
                        continue
                    _optimizer_step(model, optimizer, optim_cfg.clip_grad)
                    prog.step += 1
                    if prog.step % run_cfg.log_interval == 0:
                        _log_train(run, bar, meter, prog, lr,
                                   spent + time.perf_counter() - t0, device)
                        spent, t0 = 0.0, time.perf_counter()
                    if run_cfg.ckpt_interval and prog.step % run_cfg.ckpt_interval == 0 \
                            and prog.batch < n_batches:
                        ckpt.save(prog, meter)
                    if stop.requested(device):
                        raise stop.interrupted(prog.step, ckpt.save(prog, meter), run.path)
                bar.close()
                spent += time.perf_counter() - t0  # a record can span epochs: img_s over both
                prog.epoch, prog.batch = prog.epoch + 1, 0
                _report_skipped(train_set, "train", prog, run, log, named)
                if val_set is not None and (prog.epoch % run_cfg.eval_interval == 0
                                            or prog.epoch == optim_cfg.epochs):
                    metrics = _validate(model, task, val_set, prog, data_cfg, run_cfg, device,
                                        run, log, named)
                    if best is not None and best.validated(prog.epoch, prog.step, metrics,
                                                           model):
                        log(f"epoch {prog.epoch}: the best val {best_by} so far; weights kept "
                            f"in {run.path / BEST}")
                record = _monitor(monitors, model, prog, device, run, log)
                if best is not None:
                    best.monitored(prog.epoch, record)
                ckpt.save(prog, meter)
    except NonFiniteLoss as e:
        raise DivergenceError(
            f"{e} at step {prog.step} (epoch {prog.epoch}, batch {prog.batch}), lr {lr:.3g}; "
            f"last good checkpoint: {ckpt.last or 'none'}. Lower the lr or raise "
            "warmup_epochs.") from None
    return metrics


def _whole_steps(train_set, B: int, accum: int) -> int:
    """Batches per epoch, cut to whole optimizer steps."""
    n_batches = batches_per_epoch(train_set, B)
    if n_batches < accum:
        raise ConfigError(f"data.batch_size={B} x {accum} accumulation steps needs at least "
                          f"{B * accum * dist.world_size()} training images, got {len(train_set)}")
    return n_batches - n_batches % accum


def _bar(n_batches: int, prog: Progress) -> tqdm:
    return tqdm(total=n_batches, initial=prog.batch, desc=f"epoch {prog.epoch}",
                disable=not dist.is_main(), leave=False, mininterval=2.0, file=sys.stderr,
                dynamic_ncols=True)


def _optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                    clip_grad: float | None) -> None:
    if clip_grad:
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _log_train(run: RunDir, bar: tqdm, meter: dict, prog: Progress, lr: float,
               elapsed: float, device: torch.device) -> None:
    """One train record of the running averages since the last one; they restart."""
    rec = _meter_record(meter, prog, lr, elapsed, device)
    run.log(rec)
    bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}", img_s=f"{rec['img_s']:.0f}")
    meter.clear()


def _validate(model: nn.Module, task, val_set, prog: Progress, data_cfg: DataConfig,
              run_cfg: RunConfig, device: torch.device, run: RunDir, log,
              named: set[str]) -> dict:
    """Evaluate on `val_set`; record and log the metrics and any skipped files."""
    metrics = evaluate(model, task, val_set, data_cfg.batch_size, device, data_cfg.num_workers,
                       run_cfg.amp)
    _report_skipped(val_set, "val", prog, run, log, named)
    run.log({"epoch": prog.epoch, "step": prog.step, "split": "val", **metrics})
    log(f"epoch {prog.epoch}: " + _summary(metrics))
    return metrics


def _monitor(monitors: Sequence[Callable[[nn.Module, int], dict]], model: nn.Module,
             prog: Progress, device: torch.device, run: RunDir, log) -> dict:
    """Run the monitors on rank 0 (the other ranks wait at the checkpoint's barrier), in eval
    mode and under a forked RNG so that they never change the training; log what they return
    as one record, and return it ({} on other ranks)."""
    if not monitors or not dist.is_main():
        return {}
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
    return rec


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

"""Library entry points for the two training stages: `run_pretrain(cfg)`, `run_finetune(cfg)`.

The CLI only parses and calls these; notebooks and tests call them too. Each returns the run
folder. Both stages share `prepare` (devices, seeds, data), `open_run` (the run folder and
its TensorBoard sink) and the engine's `fit`; pretraining also passes its monitors
(`vitmae.train.monitors`). They report through `log`, by default a print on rank 0 only, so a
torchrun job logs each line once.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vitmae import distributed as dist
from vitmae.config import Config, need, to_dict
from vitmae.data import build_dataset
from vitmae.data.labelled import class_targets
from vitmae.data.volume_seg_items import mae_items
from vitmae.models import VisionTransformer, arch_name, build_finetune_model, build_mae
from vitmae.runs.checkpoint import CheckpointError, latest_good_checkpoint
from vitmae.runs.folder import RunDir
from vitmae.runs.sinks import TensorBoardSink, require_tensorboard
from vitmae.tasks import build_task
from vitmae.tasks.classify import balanced_weights
from vitmae.tasks.segment import volume_window
from vitmae.train.adversarial import AdversarialTask
from vitmae.train.corruption_aug import CorruptionAugTask
from vitmae.train.engine import fit
from vitmae.train.monitors import pretrain_monitors
from vitmae.train.optim import base_lr, build_optimizer, is_head, param_groups
from vitmae.train.split_monitor import finetune_monitors
from vitmae.variants import CNN_ARCHS
from vitmae.weights import read_source
from vitmae.weights.keys import ENCODER_PREFIX
from vitmae.weights.pretrained import adopt, keeps_head, load_decoder, load_into


@dataclass
class Prepared:
    device: torch.device
    train_set: object
    val_set: object


def setup(cfg: Config) -> torch.device:
    """Process group, device, threads and seeds (seed + rank, as nanoGPT). The allocator
    setting `run.keep_freed_memory` is the command's to apply (`vitmae.cli`), not a library
    call's: it changes the whole process."""
    device = dist.init_distributed(cfg.run.device)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    torch.manual_seed(cfg.run.seed + dist.rank())
    random.seed(cfg.run.seed + dist.rank())
    np.random.seed(cfg.run.seed + dist.rank())
    return device


def prepare(cfg: Config, with_val: bool = True, labelled: bool = False) -> Prepared:
    """Setup and the data sets; `labelled` (fine-tuning): only data.labels_fraction of the
    training images."""
    device = setup(cfg)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True, labelled=labelled)
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False) if with_val else None
    dims = getattr(train_set, "spatial_dims", 2)  # volume data sets say 3
    need(dims == cfg.model.spatial_dims, "model.spatial_dims",
         f"data.dataset={cfg.data.dataset} has {dims}-D items; set model.spatial_dims={dims}")
    return Prepared(device, train_set, val_set)


def open_run(cfg: Config, stage: str, resume: str | None,
             log=dist.say) -> tuple[RunDir, Path | None]:
    """A new run folder, or the one being resumed with its newest good checkpoint; with
    run.tensorboard, the run's records also go to TensorBoard."""
    if cfg.run.tensorboard:
        require_tensorboard()  # fail before a run folder is made
    if resume is None:
        run = RunDir.create(cfg.run.output_dir, cfg.run.name, stage, cfg.data.dataset,
                            to_dict(cfg))
        ckpt = None
    else:
        run = RunDir(resume)
        ckpt = latest_good_checkpoint(run.path, log=log)
        if ckpt is None:
            raise CheckpointError(f"--resume {resume}: no usable checkpoint in that run folder")
    if cfg.run.tensorboard:
        run.sinks.append(TensorBoardSink(run.path))
    return run, ckpt


def run_pretrain(cfg: Config, resume: str | None = None, log=dist.say) -> Path:
    """MAE pretraining on cfg.data with cfg.pretrain.optim; with `pretrain.init`, the
    encoder (and the decoder, when the file has a fitting one) starts from those weights."""
    need(cfg.model.arch not in CNN_ARCHS, "model.arch",
         f"MAE pretraining masks a ViT's patch tokens; {cfg.model.arch} is a CNN, trained "
         f"from scratch by `vitmae finetune`")
    try:
        init, o = cfg.pretrain.init, cfg.pretrain.optim
        src = adopt(cfg, init, log) if init and resume is None else None
        p = prepare(cfg)
        model = build_mae(cfg.model, cfg.data.img_size, p.train_set.in_chans,
                          cfg.pretrain.distill_weight)
        if src is not None:
            load_into(model.encoder, src, log=log)
            load_decoder(model, src, log=log)
            log(f"loaded the encoder of {init} ({src.format} format)")
        teacher = start_teacher(cfg, model.encoder, src, log)
        model.to(p.device)
        lr = base_lr(o, cfg.data.batch_size * o.accum_iter * dist.world_size())
        optimizer = build_optimizer(pretrain_groups(cfg, model), o, lr)
        run, ckpt = open_run(cfg, "pretrain", resume, log)
        run.record_data(cfg.data.dataset, p.train_set)
        log(f"pretraining {arch_name(cfg.model)} on {cfg.data.dataset} "
            f"({len(p.train_set)} images) for {o.epochs} epochs, lr {lr:.3g}; "
            f"run folder {run.path}")
        val_set = mae_items(p.val_set, cfg.data.img_size)
        monitors = pretrain_monitors(cfg, val_set, run.path)
        with run:
            task = build_task("pretrain", eval_seed=cfg.run.seed,
                              teacher=teacher.to(p.device) if teacher is not None else None)
            fit(model, task, optimizer, lr, o,
                p.train_set, val_set, cfg.data, cfg.run, run, p.device, to_dict(cfg),
                resume=ckpt, log=log, monitors=monitors)
        return run.path
    finally:  # the process group of `setup`, also when training stops early
        dist.cleanup()


def pretrain_groups(cfg: Config, model) -> list[dict]:
    """The MAE's parameter groups: the decoder at the lr, the encoder at
    pretrain.encoder_lr_scale times it, with layer decay (pretrain.optim.layer_decay) and
    frozen for the first pretrain.decoder_warmup_epochs (continued pretraining from weights
    that a fresh decoder's first gradients would distort)."""
    o = cfg.pretrain
    return param_groups(model, o.optim.weight_decay, o.optim.layer_decay, model.encoder.depth,
                        ENCODER_PREFIX, encoder_lr_mult=o.encoder_lr_scale,
                        encoder_start=o.decoder_warmup_epochs)


def start_teacher(cfg: Config, encoder: VisionTransformer, src,
                  log=dist.say) -> VisionTransformer | None:
    """With pretrain.distill_weight, a frozen copy of the starting encoder for feature
    distillation: the encoder just loaded, or on resume (the model will hold the checkpoint's
    weights) a copy loaded from the pretrain.init file again."""
    if not cfg.pretrain.distill_weight:
        return None
    teacher = copy.deepcopy(encoder)
    if src is None:
        load_into(teacher, read_source(cfg.pretrain.init), log=log)
    return teacher.requires_grad_(False).eval()


def robust_training(cfg: Config, task, ds, log=dist.say):
    """`task`, wrapped as finetune.adversarial and finetune.corruption_aug ask: the images
    corrupted first, then attacked (the attack sees what the model would see). With neither,
    the task itself: the step is the plain one."""
    f = cfg.finetune
    if f.adversarial != "none":
        attack = "segpgd" if f.adversarial == "pgd" and cfg.task == "segment" else f.adversarial
        task = AdversarialTask(task, attack, f.adv_eps, f.adv_steps, f.adv_alpha, ds.mean,
                               ds.std, f.adv_size, f.adv_fraction)
        steps = f"{f.adv_steps} steps of " if attack in ("pgd", "segpgd") else ""
        at = f", on a {f.adv_size} px grid" if f.adv_size else ""
        share = f", {f.adv_fraction:g} of each batch" if f.adv_fraction < 1 else ""
        log(f"adversarial training: {attack}, eps {f.adv_eps * 255:g}/255, "
            f"{steps}{task.alpha * 255:g}/255{at}{share}")
    if f.corruption_aug:
        need(ds.in_chans in (1, 3), "finetune.corruption_aug",
             f"the common corruptions are of grey or RGB images; {cfg.data.dataset} has "
             f"{ds.in_chans} channels")
        task = CorruptionAugTask(task, f.corruption_aug, ds.mean, ds.std, f.corruption_size)
        at = f" at {f.corruption_size} px" if f.corruption_size else ""
        log(f"corruption augmentation: each training image corrupted{at} with probability "
            f"{f.corruption_aug:g}")
    return task


def class_weights(cfg: Config, ds, log) -> torch.Tensor | None:
    """finetune.class_weights=balanced: (K,) weights from the training split's labels."""
    if cfg.finetune.class_weights == "none":
        return None
    w = balanced_weights(class_targets(ds, "finetune.class_weights"), ds.num_classes)
    names = getattr(ds, "classes", None) or range(ds.num_classes)
    log("class weights of the loss (balanced): " +
        ", ".join(f"{n} {v:.3g}" for n, v in zip(names, w.tolist(), strict=True)))
    return w


def run_finetune(cfg: Config, resume: str | None = None, log=dist.say) -> Path:
    """Fine-tune (or train from scratch) the encoder plus a head for cfg.task."""
    try:
        f, o = cfg.finetune, cfg.finetune.optim
        src = adopt(cfg, f.pretrained, log) if f.pretrained and resume is None else None
        p = prepare(cfg, labelled=True)
        ds = p.train_set
        model, encoder, prefix = build_finetune_model(cfg, ds.in_chans, ds.num_classes)
        if src is not None:
            missing = load_into(encoder, src, keeps_head(cfg, src, ds.num_classes), log)
            log(f"loaded the encoder of {f.pretrained} ({src.format} format; new: "
                f"{', '.join(sorted(missing)) or '-'})")
        if f.linear_probe:  # train only what the encoder does not own
            for prm in encoder.parameters():
                prm.requires_grad_(False)
            for name, prm in model.named_parameters():
                if is_head(name, prefix):
                    prm.requires_grad_(True)
        model.to(p.device)
        lr = base_lr(o, cfg.data.batch_size * o.accum_iter * dist.world_size())
        # layer decay is over a ViT's blocks (the config refuses it for a CNN)
        depth = encoder.depth if isinstance(encoder, VisionTransformer) else None
        groups = param_groups(model, o.weight_decay, o.layer_decay, depth, prefix,
                              f.head_lr_mult)
        optimizer = build_optimizer(groups, o, lr)
        task = build_task(cfg.task, num_classes=ds.num_classes,
                          classes=getattr(ds, "classes", None),
                          label_smoothing=f.label_smoothing, aux_weight=cfg.model.seg_aux,
                          class_weights=class_weights(cfg, ds, log),
                          window=volume_window(cfg, ds))
        task = robust_training(cfg, task, ds, log)
        run, ckpt = open_run(cfg, "finetune", resume, log)
        run.record_data(cfg.data.dataset, ds)
        source = f"from {f.pretrained}" if f.pretrained else "from scratch"
        fraction = cfg.data.labels_fraction
        labelled = f", data.labels_fraction={fraction:g}" if fraction < 1.0 else ""
        log(f"fine-tuning {arch_name(cfg.model)} for {cfg.task} on {cfg.data.dataset} "
            f"({len(ds)} images{labelled}) {source} for {o.epochs} epochs, lr {lr:.3g}; "
            f"run folder {run.path}")
        with run:
            fit(model, task, optimizer, lr, o, p.train_set, p.val_set, cfg.data, cfg.run, run,
                p.device, to_dict(cfg), resume=ckpt, log=log,
                monitors=finetune_monitors(cfg, task, p.device), best_by=f.best_by)
        return run.path
    finally:  # the process group of `setup`, also when training stops early
        dist.cleanup()

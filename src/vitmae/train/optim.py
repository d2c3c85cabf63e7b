"""Optimizer construction and the learning-rate schedule.

Follows MAE (`util/lr_decay.py`, `util/lr_sched.py`) and nanoGPT: no weight decay on
biases, norms and embeddings (`p.ndim < 2`), layer-wise lr decay for fine-tuning, and the lr
as a pure function of the (fractional) epoch: linear warmup, then half-cycle cosine.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from vitmae.config import OptimConfig
from vitmae.models.vit import layer_id

NO_DECAY = ("cls_token", "pos_embed", "mask_token", "decoder_pos_embed")


def is_head(name: str, prefix: str) -> bool:
    """Whether a parameter belongs to the task head: outside the encoder (whose names start with
    `prefix`, e.g. 'encoder.'), or the classifier `head.` of a ViT that is its own encoder."""
    return not name.startswith(prefix) if prefix else name.startswith("head.")


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0,
                 depth: int | None = None, prefix: str = "",
                 head_lr_mult: float = 1.0, encoder_lr_mult: float = 1.0,
                 encoder_start: float = 0.0) -> list[dict]:
    """Parameter groups with `lr_scale` (layer decay, `head_lr_mult` for the task head, as
    mmsegmentation's `lr_mult` for decode heads, `encoder_lr_mult` for the rest) and weight
    decay only for matrices.

    `prefix` is stripped from names before the layer lookup (e.g. 'encoder.').
    `encoder_start`: the (fractional) epoch before which the encoder's groups get lr 0 (a head
    or MAE decoder warmed up on a frozen pretrained encoder: Kumar et al. 2022, LP-FT).
    """
    groups: dict[tuple, dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        short = name[len(prefix):] if prefix and name.startswith(prefix) else name
        no_decay = p.ndim < 2 or short.endswith(NO_DECAY)
        if layer_decay < 1.0 and depth is not None:
            lid = layer_id(short, depth) if name.startswith(prefix) else depth + 1
            scale = layer_decay ** (depth + 1 - lid)
        else:
            scale = 1.0
        head = is_head(name, prefix)
        scale *= head_lr_mult if head else encoder_lr_mult
        start = 0.0 if head else encoder_start
        key = (no_decay, scale, start)
        group = groups.setdefault(key, {"params": [], "weight_decay": 0.0 if no_decay else
                                        weight_decay, "lr_scale": scale})
        if start:
            group["start_epoch"] = start
        group["params"].append(p)
    return list(groups.values())


def build_optimizer(groups: list[dict], cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW (MAE's choice) or plain Adam (the founding recipe); fused kernels where they exist."""
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    if cfg.optimizer == "adam":  # plain Adam: L2 through the gradient would change the recipe
        groups = [dict(g, weight_decay=0.0) for g in groups]
    devices = {p.device.type for g in groups for p in g["params"]}
    try:
        return cls(groups, lr=lr, betas=cfg.betas, fused=devices <= {"cpu", "cuda"})
    except (RuntimeError, TypeError):  # older torch: no fused kernel for this device
        return cls(groups, lr=lr, betas=cfg.betas)


def base_lr(cfg: OptimConfig, eff_batch: int) -> float:
    """cfg.lr if given, else the MAE scaling rule blr * effective batch / 256."""
    return cfg.lr if cfg.lr is not None else cfg.blr * eff_batch / 256


def lr_at(epoch: float, lr: float, cfg: OptimConfig) -> float:
    """The lr at a fractional epoch: linear warmup, then cosine to min_lr (or constant)."""
    if epoch < cfg.warmup_epochs:
        return lr * epoch / cfg.warmup_epochs
    if cfg.schedule == "constant":
        return lr
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
    progress = min((epoch - cfg.warmup_epochs) / span, 1.0)
    return cfg.min_lr + (lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float, epoch: float = 0.0) -> None:
    """Each group's lr at `epoch`: lr times its `lr_scale`, 0 before its `start_epoch` (AdamW
    with lr 0 leaves a parameter bit for bit as it is, weight decay included)."""
    for group in optimizer.param_groups:
        started = epoch >= group.get("start_epoch", 0.0)
        group["lr"] = lr * group.get("lr_scale", 1.0) if started else 0.0

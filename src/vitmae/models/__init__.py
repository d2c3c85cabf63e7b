"""Models: the ViT encoder, the MAE around it, and the fine-tuning models built on it.

`build_finetune_model(cfg, in_chans, num_classes)` returns the fine-tuning model for
`cfg.task`, the encoder inside it (where pretrained weights go) and the encoder's name prefix;
`load_finetuned` builds that model around a fine-tuned state dict (evaluation, pictures).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vitmae.errors import ConfigError
from vitmae.models.mae import MaskedAutoencoder, build_mae
from vitmae.models.segmenter import build_segmenter
from vitmae.models.vit import VARIANTS, VisionTransformer, build_vit

__all__ = ["VARIANTS", "MaskedAutoencoder", "VisionTransformer", "build_finetune_model",
           "build_mae", "build_vit", "load_finetuned"]


def build_finetune_model(cfg, in_chans: int, num_classes: int
                         ) -> tuple[nn.Module, VisionTransformer, str]:
    """-> (model, its encoder, the encoder's name prefix inside the model)."""
    img_size = cfg.data.img_size
    if cfg.task in ("classify", "multilabel"):
        model = build_vit(cfg.model, img_size, in_chans, num_classes=num_classes)
        return model, model, ""
    if cfg.task == "segment":
        model = build_segmenter(cfg.model, img_size, in_chans, num_classes)
        return model, model.encoder, "encoder."
    raise ConfigError(f"task: no model for {cfg.task!r}")


def load_finetuned(cfg, state: dict[str, torch.Tensor], in_chans: int,
                   num_classes: int) -> nn.Module:
    """The fine-tuning model of cfg.task holding every weight of `state` (strict), in
    training mode as built."""
    model, _, _ = build_finetune_model(cfg, in_chans, num_classes)
    model.load_state_dict(state, strict=True)
    return model

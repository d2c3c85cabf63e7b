"""Models: the ViT encoder, the MAE around it, and the fine-tuning models built on it.

`build_model(cfg, in_chans, num_classes)` returns the fine-tuning model for `cfg.task` and the
encoder inside it (where pretrained weights go), plus the keys a pretrained encoder is
expected to be missing (the new head's).
"""

from __future__ import annotations

import torch.nn as nn

from vitmae.models.mae import MaskedAutoencoder, build_mae
from vitmae.models.vit import VARIANTS, VisionTransformer, build_vit

__all__ = ["VARIANTS", "MaskedAutoencoder", "VisionTransformer", "build_finetune_model",
           "build_mae", "build_vit"]


def build_finetune_model(cfg, in_chans: int, num_classes: int
                         ) -> tuple[nn.Module, VisionTransformer, str]:
    """-> (model, its encoder, the encoder's name prefix inside the model)."""
    img_size = cfg.data.img_size
    if cfg.task in ("classify", "multilabel"):
        model = build_vit(cfg.model, img_size, in_chans, num_classes=num_classes)
        return model, model, ""
    if cfg.task == "segment":
        from vitmae.models.segmenter import build_segmenter

        model = build_segmenter(cfg.model, img_size, in_chans, num_classes)
        return model, model.encoder, "encoder."
    raise ValueError(f"task: no model for {cfg.task!r}")

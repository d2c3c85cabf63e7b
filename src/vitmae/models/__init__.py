"""Models: the ViT encoder, the MAE around it, and the fine-tuning models built on it.

`build_finetune_model(cfg, in_chans, num_classes)` returns the fine-tuning model for
`cfg.task`, the encoder inside it (where pretrained weights go) and the encoder's name prefix;
`load_finetuned` builds that model around a fine-tuned state dict (evaluation, pictures).
With `model.arch` a CNN (`vitmae.variants.CNN_ARCHS`) the model is a torchvision ResNet
(`vitmae.models.cnn`) for classify and multilabel.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vitmae.errors import ConfigError
from vitmae.models import vit
from vitmae.models.cnn import CNNClassifier, build_cnn
from vitmae.models.mae import MaskedAutoencoder, build_mae
from vitmae.models.segmenter import build_segmenter
from vitmae.models.vit import VARIANTS, VisionTransformer, build_vit
from vitmae.variants import CNN_ARCHS

__all__ = ["VARIANTS", "CNNClassifier", "MaskedAutoencoder", "VisionTransformer", "arch_name",
           "build_finetune_model", "build_mae", "build_vit", "load_finetuned"]


def arch_name(model_cfg) -> str:
    """The model's name for logs: 'resnet18 (cifar stem)', or the ViT variant's (vit.arch_name)."""
    if model_cfg.arch in CNN_ARCHS:
        return f"{model_cfg.arch} ({model_cfg.cnn_stem} stem)"
    return vit.arch_name(model_cfg)


def build_finetune_model(cfg, in_chans: int, num_classes: int
                         ) -> tuple[nn.Module, nn.Module, str]:
    """-> (model, its encoder, the encoder's name prefix inside the model). The encoder is a
    VisionTransformer, or a CNN's body for model.arch in CNN_ARCHS."""
    img_size = cfg.data.img_size
    if cfg.model.arch in CNN_ARCHS:
        if cfg.task not in ("classify", "multilabel"):
            raise ConfigError(f"task: model.arch={cfg.model.arch} classifies (classify, "
                              f"multilabel); it has no model for {cfg.task!r}")
        model = build_cnn(cfg.model.arch, cfg.model.cnn_stem, in_chans, num_classes)
        return model, model.encoder, "encoder."
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

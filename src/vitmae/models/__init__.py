"""Models: the ViT encoder, the MAE around it, and the fine-tuning models built on it.

`build_finetune_model(cfg, in_chans, num_classes)` returns the fine-tuning model for
`cfg.task`, the encoder inside it (where pretrained weights go) and the encoder's name prefix;
`load_finetuned` builds that model around a fine-tuned state dict (evaluation, pictures).
With `model.arch` a CNN (`vitmae.variants.CNN_ARCHS`) the model is a torchvision ResNet
(`vitmae.models.cnn`; its video version with `model.spatial_dims=3`) for classify and
multilabel.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vitmae.errors import ConfigError
from vitmae.models import vit
from vitmae.models.cnn import CNNClassifier, build_cnn
from vitmae.models.mae import MaskedAutoencoder, build_mae
from vitmae.models.segmenter import build_segmenter
from vitmae.models.vit import VisionTransformer, build_vit
from vitmae.variants import CNN_3D, CNN_ARCHS, VARIANTS

__all__ = ["VARIANTS", "CNNClassifier", "MaskedAutoencoder", "VisionTransformer", "arch_name",
           "build_finetune_model", "build_mae", "build_vit", "load_finetuned"]


def arch_name(model_cfg) -> str:
    """The model's name for logs: 'resnet18 (cifar stem)' ('resnet18 3-D (r3d_18, cifar
    stem)' on volumes); for a ViT the variant's name, followed by the sizes that overrides
    change in it: 'vit_mini_patch8' or 'vit_mini_patch8 (patch_size=4, embed_dim=64,
    num_heads=2)'."""
    if model_cfg.arch in CNN_ARCHS:
        if model_cfg.spatial_dims == 3:
            return f"{model_cfg.arch} 3-D ({CNN_3D[model_cfg.arch]}, {model_cfg.cnn_stem} stem)"
        return f"{model_cfg.arch} ({model_cfg.cnn_stem} stem)"
    arch = vit.resolve_arch(model_cfg)
    if model_cfg.arch not in VARIANTS:
        return f"{model_cfg.arch} ({', '.join(f'{k}={v}' for k, v in arch.items())})"
    base = VARIANTS[model_cfg.arch]
    changed = [f"{k}={v}" for k, v in arch.items() if base[k] != v]
    return f"{model_cfg.arch} ({', '.join(changed)})" if changed else model_cfg.arch


def build_finetune_model(cfg, in_chans: int, num_classes: int
                         ) -> tuple[nn.Module, nn.Module, str]:
    """-> (model, its encoder, the encoder's name prefix inside the model). The encoder is a
    VisionTransformer, or a CNN's body for model.arch in CNN_ARCHS."""
    img_size = cfg.data.img_size
    if cfg.model.arch in CNN_ARCHS:
        if cfg.task not in ("classify", "multilabel"):
            raise ConfigError(f"task: model.arch={cfg.model.arch} classifies (classify, "
                              f"multilabel); it has no model for {cfg.task!r}")
        model = build_cnn(cfg.model.arch, cfg.model.cnn_stem, in_chans, num_classes,
                          cfg.model.spatial_dims)
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

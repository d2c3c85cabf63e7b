"""A torchvision ResNet as a classification model beside the ViT (He et al. 2016): the CNN
baseline, trained from scratch by the same engine and tasks.

The model is `encoder` (torchvision's ResNet, its `fc` replaced by the identity, so it gives
the pooled features) plus a linear `head`, the same encoder/head split as the segmenter's,
so that `finetune.linear_probe` and `finetune.head_lr_mult` mean what they mean for a ViT.

`model.cnn_stem` chooses the layers before the first stage:
- "imagenet": torchvision's, a 7x7 stride-2 conv and a stride-2 max-pool. It divides the
  image by 4 before the first stage, right for 224 px; a 32 px image would reach the last
  stage as 1x1.
- "cifar": a 3x3 stride-1 conv and no max-pool, as the CIFAR ResNets of He et al. (Sec. 4.2)
  and the usual CIFAR ResNet-18: a 32 px image enters the first stage at 32x32, the last at
  4x4.

With `spatial_dims=3` (volumes (B, C, D, H, W)) the same name builds torchvision's video
ResNet (`vitmae.variants.CNN_3D`: resnet18 -> r3d_18, Tran et al. 2018, 3-D convolutions
throughout), the 3-D ResNet-18 of MedMNIST v2's baselines. Its stem has no max-pool:
- "imagenet": torchvision's, a (3, 7, 7) conv with stride (1, 2, 2), made for video clips.
- "cifar": a 3x3x3 stride-1 conv: a 28^3 volume enters the first stage at 28^3, the last at
  4^3.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torchvision

from vitmae.errors import ConfigError
from vitmae.variants import CNN_3D, CNN_ARCHS, CNN_STEMS

STEM_WIDTH = 64  # conv1's output channels in every torchvision ResNet


class CNNClassifier(nn.Module):
    """`encoder`: (B, C, H, W) or (B, C, D, H, W) -> (B, F) pooled features;
    `head`: (B, F) -> (B, K)."""

    def __init__(self, encoder: nn.Module, num_features: int, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.num_features = num_features
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, C, H, W) or (B, C, D, H, W) -> logits (B, K). `generator` is the tasks'
        argument for random draws inside the model; a ResNet makes none."""
        return self.head(self.encoder(x))


def build_cnn(arch: str, stem: str, in_chans: int, num_classes: int,
              spatial_dims: int = 2) -> CNNClassifier:
    """torchvision's `arch` (its video counterpart for spatial_dims=3) with random weights,
    its first conv fitted to `in_chans` and the stem `stem`, and a fresh linear head to
    `num_classes`."""
    if arch not in CNN_ARCHS:
        raise ConfigError(f"model.arch: {arch!r} is not a CNN (known: {', '.join(CNN_ARCHS)})")
    if stem not in CNN_STEMS:
        raise ConfigError(f"model.cnn_stem: expected one of {CNN_STEMS}, got {stem!r}")
    net = _resnet_3d(arch, stem, in_chans) if spatial_dims == 3 else \
        _resnet_2d(arch, stem, in_chans)
    num_features = net.fc.in_features
    net.fc = nn.Identity()  # the encoder ends at the pooled (B, F) features
    return CNNClassifier(net, num_features, num_classes)


def _resnet_2d(arch: str, stem: str, in_chans: int) -> nn.Module:
    net = getattr(torchvision.models, arch)(weights=None)
    if stem == "cifar" or in_chans != 3:
        k, stride = (3, 1) if stem == "cifar" else (7, 2)  # torchvision's conv1: 7x7, stride 2
        net.conv1 = nn.Conv2d(in_chans, STEM_WIDTH, k, stride=stride, padding=k // 2,
                              bias=False)
        _init_conv(net.conv1)
    if stem == "cifar":
        net.maxpool = nn.Identity()
    return net


def _resnet_3d(arch: str, stem: str, in_chans: int) -> nn.Module:
    if arch not in CNN_3D:
        raise ConfigError(f"model.arch: {arch} has no 3-D version (3-D: {', '.join(CNN_3D)})")
    net = getattr(torchvision.models.video, CNN_3D[arch])(weights=None)
    if stem == "cifar" or in_chans != 3:
        # torchvision's video stem: (3, 7, 7), stride (1, 2, 2): halves H and W, keeps D
        k, stride = ((3, 3, 3), 1) if stem == "cifar" else ((3, 7, 7), (1, 2, 2))
        net.stem[0] = nn.Conv3d(in_chans, STEM_WIDTH, k, stride=stride,
                                padding=tuple(n // 2 for n in k), bias=False)
        _init_conv(net.stem[0])
    return net


def _init_conv(conv: nn.Module) -> None:
    """torchvision's initialisation of every other ResNet conv, 2-D and video alike."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

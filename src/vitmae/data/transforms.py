"""Per-data-set transforms (torchvision.transforms.v2), shared by the data set files.

In-memory sets (digits, MNIST, CIFAR) transform a uint8 or [0, 1] float tensor
(C, h, w) -> float32 (C, img_size, img_size): to float, resize, augment, normalize.
Augmentations follow common practice: CIFAR pad-4 crop + flip (He et al., ResNet), small
translations and no flips for digits, RandomResizedCrop + flip for photos (MAE fine-tuning
uses scale (0.08, 1) on ImageNet; 0.35 keeps more of a small image).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2

BILINEAR = v2.InterpolationMode.BILINEAR
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def tensor_transform(native: int, img_size: int, mean: tuple, std: tuple,
                     augment: list[nn.Module]) -> v2.Compose:
    """(C, native, native) uint8/float -> (C, img_size, img_size) float32, normalized."""
    steps: list[nn.Module] = [v2.ToDtype(torch.float32, scale=True)]
    if native != img_size:
        steps.append(v2.Resize((img_size, img_size), interpolation=BILINEAR, antialias=True))
    return v2.Compose([*steps, *augment, v2.Normalize(mean, std)])


def digits_transform(img_size: int, mean: tuple, std: tuple, train: bool) -> v2.Compose:
    """sklearn digits (1, 8, 8): augment after upsampling (8 px is too coarse to shift)."""
    aug = [v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))] if train else []
    return tensor_transform(8, img_size, mean, std, aug)


def mnist_transform(img_size: int, mean: tuple, std: tuple, train: bool) -> v2.Compose:
    """MNIST-like (1, 28, 28): random shift of up to ~10% (3 px at 28), zero padding; no flip."""
    pad = max(1, round(0.1 * img_size))
    aug = [v2.RandomCrop(img_size, padding=pad)] if train else []
    return tensor_transform(28, img_size, mean, std, aug)


def cifar_transform(img_size: int, mean: tuple, std: tuple, train: bool) -> v2.Compose:
    """CIFAR (3, 32, 32): RandomCrop(32, padding=4) + horizontal flip, scaled to img_size."""
    aug = [v2.RandomCrop(img_size, padding=max(1, img_size // 8)),
           v2.RandomHorizontalFlip()] if train else []
    return tensor_transform(32, img_size, mean, std, aug)


def folder_transform(img_size: int, mean: tuple, std: tuple, train: bool) -> v2.Compose:
    """A PIL RGB photo of any size -> (3, img_size, img_size) float32, normalized."""
    if train:
        size = [v2.RandomResizedCrop(img_size, scale=(0.35, 1.0), antialias=True),
                v2.RandomHorizontalFlip()]
    else:
        size = [v2.Resize(img_size, antialias=True), v2.CenterCrop(img_size)]
    return v2.Compose([v2.ToImage(), *size, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(mean, std)])

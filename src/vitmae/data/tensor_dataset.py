"""A classification dataset held in memory as one tensor of images (digits, MNIST, CIFAR) or
volumes (MedMNIST 3-D).

Items are cheap: an index into a uint8 tensor and a small v2 transform, no PIL.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset


class ImageTensorDataset(Dataset):
    """images: (N, C, h, w), or volumes (N, C, d, h, w), uint8 or float in [0, 1]; targets:
    (N,) int class indices."""

    def __init__(self, images: Tensor, targets: Tensor, transform: Callable[[Tensor], Tensor],
                 classes: list[str], mean: tuple, std: tuple):
        if images.dim() not in (4, 5) or len(images) != len(targets):
            raise ValueError(f"expected images (N, C, h, w) or volumes (N, C, d, h, w) and N "
                             f"targets, got "
                             f"{tuple(images.shape)} and {len(targets)}")
        self.images = images
        self.targets = targets.long()
        self.transform = transform
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.in_chans = images.shape[1]
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        # (C, h, w) -> (C, img_size, img_size) float32; volumes (C, d, h, w) likewise
        return self.transform(self.images[i]), int(self.targets[i])

    def label_counts(self) -> Tensor:
        """(num_classes,) number of items per class."""
        return torch.bincount(self.targets, minlength=self.num_classes)

"""Joint image + mask transforms for segmentation (torchvision.transforms.v2, tv_tensors).

The photo is a `tv_tensors.Image` and the label map a `tv_tensors.Mask`, so that one v2
pipeline moves both by the same random parameters: geometric ops resample the mask with
nearest neighbours (labels are never blended), and padding fills the mask with 255 (void,
ignored by the loss and the metrics) and the image with 0. Training follows the DeepLab
recipe at CPU scale: random scale, random crop of img_size (padded where the scaled image is
smaller), horizontal flip. Evaluation resizes the image to img_size x img_size for the
model and leaves the mask at its original size (metrics are computed there).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision import tv_tensors
from torchvision.transforms import v2

VOID = 255
SCALE_RANGE = (0.75, 1.5)  # of img_size for the shorter side (DeepLab: 0.5-2 of the photo)


class RandomShortSideScale(nn.Module):
    """Resize so that the shorter side is img_size x U(lo, hi), the same for image and mask."""

    def __init__(self, img_size: int, scale: tuple[float, float] = SCALE_RANGE):
        super().__init__()
        self.img_size, self.scale = img_size, scale

    def forward(self, img: tv_tensors.Image, mask: tv_tensors.Mask):
        s = torch.empty(()).uniform_(*self.scale).item()
        size = max(1, round(self.img_size * s))
        return v2.functional.resize(img, size, antialias=True), v2.functional.resize(mask, size)


def train_joint_transform(img_size: int, mean: tuple, std: tuple) -> v2.Compose:
    """(Image (3, H0, W0) uint8, Mask (H0, W0)) -> (3, S, S) float32 normalized, (S, S)."""
    return v2.Compose([
        RandomShortSideScale(img_size),
        v2.RandomCrop(img_size, pad_if_needed=True,
                      fill={tv_tensors.Image: 0, tv_tensors.Mask: VOID}),
        v2.RandomHorizontalFlip(),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64},
                   scale=True),
        v2.Normalize(mean, std),
    ])


def eval_image_transform(img_size: int, mean: tuple, std: tuple) -> v2.Compose:
    """Image (3, H0, W0) uint8 -> (3, S, S) float32 normalized; the aspect ratio is not kept."""
    return v2.Compose([
        v2.Resize((img_size, img_size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


def pad_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(H0, W0) -> (H, W) int64, the original at the top left, the rest VOID (for batching)."""
    out = torch.full(size, VOID, dtype=torch.int64)
    out[: mask.shape[0], : mask.shape[1]] = mask
    return out

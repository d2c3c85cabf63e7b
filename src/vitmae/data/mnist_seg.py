"""Segmentation images made from MNIST digits, deterministic and built on the fly.

Two data sets, 11 classes: 0 = background, d + 1 = digit d. A pixel belongs to a digit when
its intensity (0-255, after scaling the digit to its drawn size) is above
`data.mnist_seg.threshold`; all other pixels are background.
  `mnist_seg_single`: one digit filling an img_size x img_size image (28 px: MNIST itself);
      item i is digit i of the split.
  `mnist_seg`: img_size x img_size canvases (64 px in the preset) with 1..`data.mnist_seg.digits`
      digits, each scaled to a random size of 5/16 to 5/8 of the canvas (20-40 px at 64)
      and placed at a random position fully inside it. Where digits overlap, a later digit's
      foreground overwrites what is below (image and label); elsewhere the brighter pixel
      is kept, so that the label is foreground exactly where the pixel is above threshold.
      As many canvases as digits in the split; the layout of canvas i is drawn once from
      `data.seed` (numpy PCG64) when the data set is built, the pixels when item i is read.
Digits come from MNIST's train split for 'train' and its test split for 'test'.
Items: (img (1, S, S) float32 normalized with MNIST's mean/std, mask (S, S) int64).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from vitmae.config import DataConfig
from vitmae.data.mnist import FILES, VARIANTS, build_idx_dataset
from vitmae.data.registry import check_split, norm_stats, register_dataset
from vitmae.errors import ConfigError

CLASSES = ["background"] + [str(d) for d in range(10)]
MEAN, STD = VARIANTS["mnist"][3], VARIANTS["mnist"][4]
SIZE_RANGE = (5 / 16, 5 / 8)  # digit size as a fraction of the canvas


def scale_digit(digit: Tensor, size: int) -> Tensor:
    """(28, 28) uint8 -> (size, size) float intensities 0-255 (bilinear, antialiased)."""
    x = digit.float()[None, None]  # (1, 1, 28, 28)
    if size != digit.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x[0, 0].clamp(0, 255)  # (size, size)


class MnistSegmentation(Dataset):
    """Canvases of `digits` (N, 28, 28) uint8 with `labels` (N,), laid out by `layout`.

    layout: (M, k, 4) int64 rows (digit index, size, top, left) per canvas, unused rows -1.
    """

    def __init__(self, digits: Tensor, labels: Tensor, layout: np.ndarray, canvas: int,
                 threshold: int, stats: tuple[tuple, tuple] = (MEAN, STD)):
        self.digits, self.labels = digits, labels
        self.layout, self.canvas, self.threshold = torch.from_numpy(layout), canvas, threshold
        self.classes = list(CLASSES)
        self.num_classes, self.in_chans = len(CLASSES), 1
        self.mean, self.std = stats

    def __len__(self) -> int:
        return len(self.layout)

    def placed(self, i: int) -> list[list[int]]:
        """The layout rows (digit index, size, top, left) of canvas i's digits, drawing order."""
        return [r for r in self.layout[i].tolist() if r[0] >= 0]

    def draw(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        """-> intensities (S, S) float 0-255, mask (S, S) int64 and owner (S, S) int64 of
        canvas i: owner is the layout row of the digit a pixel belongs to, -1 background."""
        S = self.canvas
        img = torch.zeros(S, S)
        owner = torch.full((S, S), -1, dtype=torch.int64)
        rows = self.placed(i)
        for j, (k, size, top, left) in enumerate(rows):
            digit = scale_digit(self.digits[k], size)  # (size, size)
            fg = digit > self.threshold
            region = (slice(top, top + size), slice(left, left + size))
            below, below_owner = img[region], owner[region]
            # overwrite with this digit's foreground; elsewhere keep the brighter (both faint)
            img[region] = torch.where(fg, digit, torch.where(below_owner >= 0, below,
                                                             torch.maximum(below, digit)))
            owner[region] = torch.where(fg, j, below_owner)
        classes = torch.tensor([0] + [int(self.labels[r[0]]) + 1 for r in rows])  # (1 + n,)
        return img, classes[owner + 1], owner

    def normalize(self, img: Tensor) -> Tensor:
        """Intensities (S, S) 0-255 -> the model's input (1, S, S)."""
        return ((img / 255 - self.mean[0]) / self.std[0]).unsqueeze(0)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        img, mask, _ = self.draw(i)
        return self.normalize(img), mask  # (1, S, S), (S, S)


def composite_layout(n_canvas: int, n_digits: int, max_per_canvas: int, canvas: int,
                     seed: int) -> np.ndarray:
    """(n_canvas, max_per_canvas, 4) rows (digit index, size, top, left), -1 rows unused."""
    rng = np.random.default_rng(seed)
    shape = (n_canvas, max_per_canvas)
    count = rng.integers(1, max_per_canvas + 1, n_canvas)  # (M,) digits on each canvas
    index = rng.integers(0, n_digits, shape)
    lo, hi = (max(1, round(f * canvas)) for f in SIZE_RANGE)
    size = rng.integers(lo, hi + 1, shape)
    top = (rng.random(shape) * (canvas - size + 1)).astype(np.int64)  # fully inside
    left = (rng.random(shape) * (canvas - size + 1)).astype(np.int64)
    layout = np.stack([index, size, top, left], axis=-1)  # (M, k, 4)
    layout[np.arange(max_per_canvas)[None, :] >= count[:, None]] = -1
    return layout


def mnist_digits(cfg: DataConfig, split: str) -> tuple[Tensor, Tensor]:
    """(N, 28, 28) uint8 digits and (N,) labels of MNIST's `split`, via the MNIST loader."""
    check_split(split, tuple(FILES), "mnist_seg")
    ds = build_idx_dataset("mnist", cfg, split, train=False)
    return ds.images[:, 0], ds.targets


@register_dataset("mnist_seg")
def build_mnist_seg(cfg: DataConfig, split: str, train: bool) -> MnistSegmentation:
    if cfg.mnist_seg.digits < 1:
        raise ConfigError(f"data.mnist_seg.digits: must be >= 1, got {cfg.mnist_seg.digits}")
    digits, labels = mnist_digits(cfg, split)
    # a different stream per split, so that train and test canvases are unrelated
    seed = cfg.seed * 2 + (split == "test")
    layout = composite_layout(len(digits), len(digits), cfg.mnist_seg.digits, cfg.img_size,
                              seed)
    return MnistSegmentation(digits, labels, layout, cfg.img_size, cfg.mnist_seg.threshold,
                             norm_stats(cfg, MEAN, STD))


@register_dataset("mnist_seg_single")
def build_mnist_seg_single(cfg: DataConfig, split: str, train: bool) -> MnistSegmentation:
    digits, labels = mnist_digits(cfg, split)
    n = len(digits)
    layout = np.zeros((n, 1, 4), np.int64)
    layout[:, 0, 0], layout[:, 0, 1] = np.arange(n), cfg.img_size  # digit i fills the image
    return MnistSegmentation(digits, labels, layout, cfg.img_size, cfg.mnist_seg.threshold,
                             norm_stats(cfg, MEAN, STD))

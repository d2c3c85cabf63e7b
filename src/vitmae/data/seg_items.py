"""A segmentation item from a photo file and its mask file, for every file-based data set
(VOC, `seg_folder`).

Masks are index or palette PNGs (the palette index is the class), 255 void. Each mask is
checked when read: a value that is neither a class nor 255, or a size that differs from the
photo's, raises a `BadMaskError` naming the file (skipped under `data.skip_bad`).
  training items: (img (3, S, S) float32, mask (S, S) int64), joint random scale / crop /
      flip (`joint_transforms`);
  evaluation items: (img (3, S, S), mask padded with 255 to the largest mask of the split
      (Hm, Wm), size (2,) = original (H0, W0)), so that the metrics are computed at the
      original size (`vitmae.tasks.segment`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

from vitmae.data.checks import BadMaskError, check_mask, open_image, read_mask_array
from vitmae.data.joint_transforms import eval_image_transform, pad_mask, train_joint_transform


def read_image(path: Path) -> tv_tensors.Image:
    """A photo -> (3, H0, W0) uint8; grey, CMYK or palette photos are converted, and one that
    cannot be decoded (truncated, not an image) raises BadImageError naming the file."""
    return v2.functional.to_image(open_image(path, "RGB"))


def read_mask(path: Path, num_classes: int = 255) -> Tensor:
    """An index or palette PNG -> (H0, W0) uint8 class indices, each in 0..num_classes-1 or
    255; BadMaskError naming the file and the bad values otherwise."""
    mask = read_mask_array(path)  # (H0, W0) integer
    check_mask(mask, num_classes, path)
    return torch.from_numpy(mask.astype(np.uint8))


def png_size(path: Path) -> tuple[int, int] | None:
    """(W, H) from the file header, without decoding the pixels; None if it cannot be read
    (the item then fails, naming the file, when it is read)."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # any Pillow failure: reported when the item is read
        return None


class SegmentationItems:
    """Reads (photo, mask) file pairs into training or evaluation items of `num_classes`."""

    def __init__(self, num_classes: int, img_size: int, mean: tuple, std: tuple, train: bool,
                 mask_paths: list[Path]):
        self.num_classes, self.train = num_classes, train
        if train:
            self.joint = train_joint_transform(img_size, mean, std)
        else:
            self.image_transform = eval_image_transform(img_size, mean, std)
            sizes = [s for s in map(png_size, mask_paths) if s is not None] or [(1, 1)]
            self.pad_to = (max(s[1] for s in sizes), max(s[0] for s in sizes))  # (Hm, Wm)

    def __call__(self, image_path: Path, mask_path: Path):
        img, mask = read_image(image_path), read_mask(mask_path, self.num_classes)
        if img.shape[-2:] != mask.shape:
            raise BadMaskError(f"{mask_path}: mask {tuple(mask.shape)} and photo {image_path} "
                               f"{tuple(img.shape[-2:])} differ in size (H, W)", mask_path)
        if self.train:
            return self.joint(img, mask)  # (3, S, S), (S, S)
        size = torch.tensor(mask.shape)  # (2,) original (H0, W0)
        return (self.image_transform(img).as_subclass(Tensor),
                pad_mask(mask.long(), self.pad_to), size)

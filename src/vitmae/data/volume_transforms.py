"""Volume transforms: (D, H, W) voxels -> (1, S, S, S) float32, normalised, S = data.img_size.

To [0, 1] (uint8 / 255, other dtypes min-max per volume: scanner units such as CT's
Hounsfield differ between files), trilinear resize to S^3 when the volume is another size,
then for training the augmentations that suit scans (as MONAI's RandFlip, RandAffine's
translation and RandScaleIntensity / RandShiftIntensity): a flip along each axis with
probability 1/2, a shift of up to `shift` of the side along each axis (zero padding, as the
MNIST crops), and intensity jitter x * (1 + a) + b with a, b uniform in [-jitter, jitter].
With `permute_axes`, the three axes also come in a random order: with the flips, any of the
cube's 48 symmetries (rotations by 90 degrees and reflections, as MONAI's RandRotate90 about
every axis), for shapes without an orientation of their own; not for scans whose axes mean
something (head to foot, front to back).
Every draw comes from torch's default generator, which the loader seeds per item
(`vitmae.data.loader.SeededSamples`), so augmentation is a function of (seed, epoch, item).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def intensity_range(volume_cfg) -> tuple[float, float] | None:
    """data.volume.intensity_range as a (lo, hi) pair, or None."""
    r = volume_cfg.intensity_range
    return (float(r[0]), float(r[1])) if r else None


def to_unit(vol: np.ndarray | torch.Tensor,
            intensity_range: tuple[float, float] | None = None) -> torch.Tensor:
    """(D, H, W) any dtype -> float32 in [0, 1]: clipped to `intensity_range` and scaled when
    given (a CT window), else uint8 / 255, else min-max of the volume."""
    v = torch.as_tensor(np.asarray(vol))
    if intensity_range is not None:
        lo, hi = intensity_range
        return ((v.double().clamp(lo, hi) - lo) / (hi - lo)).float()
    if v.dtype == torch.uint8:
        return v.float() / 255
    v = v.double()
    lo, hi = v.min(), v.max()
    return ((v - lo) / (hi - lo) if hi > lo else torch.zeros_like(v)).float()


def shift(v: torch.Tensor, offsets: list[int]) -> torch.Tensor:
    """v: (1, S, S, S) moved by `offsets` voxels along (D, H, W), zeros coming in."""
    out = torch.zeros_like(v)
    src, dst = [slice(None)], [slice(None)]
    for o, n in zip(offsets, v.shape[1:], strict=True):
        src.append(slice(max(0, -o), n - max(0, o)))
        dst.append(slice(max(0, o), n - max(0, -o)))
    out[tuple(dst)] = v[tuple(src)]
    return out


class VolumeTransform:
    """(D, H, W) array -> (1, S, S, S) float32 normalised by (mean, std); `train` augments."""

    def __init__(self, img_size: int, mean: tuple, std: tuple, train: bool,
                 shift: float = 0.1, jitter: float = 0.1,
                 intensity_range: tuple[float, float] | None = None,
                 permute_axes: bool = False):
        self.size, self.train, self.intensity_range = img_size, train, intensity_range
        self.permute_axes = permute_axes
        self.mean, self.std = float(mean[0]), float(std[0])
        self.max_shift, self.jitter = round(shift * img_size), jitter

    def __call__(self, vol: np.ndarray | torch.Tensor) -> torch.Tensor:
        """vol: (D, H, W), or (1, D, H, W) as a tensor data set's items -> (1, S, S, S)."""
        v = to_unit(vol, self.intensity_range).reshape(1, *vol.shape[-3:])  # (1, D, H, W)
        if tuple(v.shape[1:]) != (self.size,) * 3:
            v = F.interpolate(v[None], size=(self.size,) * 3, mode="trilinear",
                              align_corners=False)[0]  # (1, S, S, S)
        if self.train:
            v = self.augment(v)
        return (v - self.mean) / self.std  # (1, S, S, S)

    def augment(self, v: torch.Tensor) -> torch.Tensor:
        """v: (1, S, S, S) in [0, 1] -> (1, S, S, S): axis order, flips, shift, jitter."""
        if self.permute_axes:
            v = v.permute(0, *(torch.randperm(3) + 1).tolist())  # (1, S, S, S), axes reordered
        flips = [d for d in (1, 2, 3) if torch.rand(()) < 0.5]
        if flips:
            v = v.flip(flips)
        m = self.max_shift
        if m:
            v = shift(v, torch.randint(-m, m + 1, (3,)).tolist())
        if self.jitter:
            a, b = (torch.rand(2) * 2 - 1) * self.jitter
            v = v * (1 + a) + b
        return v

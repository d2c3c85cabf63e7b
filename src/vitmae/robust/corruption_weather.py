"""The weather corruptions of CIFAR-10-C / ImageNet-C (Hendrycks & Dietterich, ICLR 2019):
snow, frost, fog and brightness, after `snow`, `frost`, `fog` and `brightness` of
hendrycks/robustness `ImageNet-C/create_c/make_*_c.py`:

- snow: a thresholded, zoomed Gaussian field streaked by the motion blur of
  `corruption_blur` (in place of ImageMagick's), added twice (once turned 180 degrees) to the
  image whitened towards its luma.
- frost: the image plus a frost texture; ours is synthetic (`frost_texture.py`), not the
  reference's photographs.
- fog: a diamond-square plasma fractal (`plasma_fractal`, written anew after the reference's)
  on a square of the next power of two, cropped to the image.
- brightness: HSV's V raised by c with hue and saturation kept, computed without the HSV round
  trip: rgb scales with V at fixed hue and saturation, and black becomes grey V = c.

Each corruption takes `x: (B, C, H, W)` float32 in [0, 1], the severity's parameter `c` and one
generator per image, and returns `(B, C, H, W)`, unclipped. One channel is handled natively: its
luma is itself and the frost texture is reduced to its luma.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .corruption_blur import clipped_zoom, motion_blur_image
from .frost_texture import frost_texture

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, OpenCV's RGB2GRAY


def _luma(img: np.ndarray) -> np.ndarray:
    """(C, H, W) with C = 1 or 3 -> (1, H, W)."""
    return img if img.shape[0] == 1 else np.tensordot(LUMA, img, axes=1)[None]


def snow(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """c = (flake mean, flake std, flake zoom, flake threshold, streak radius, streak sigma,
    weight of the image against its whitened copy); streaks fall at -135..-45 degrees."""
    loc, scale, zoom, threshold, radius, sigma, keep = c
    out = []
    for img, rng in zip(x, rngs, strict=True):
        flakes = clipped_zoom(rng.normal(loc, scale, img.shape[1:]), zoom)  # (H, W)
        flakes[flakes < threshold] = 0
        flakes = motion_blur_image(np.clip(flakes, 0, 1), radius, sigma, rng.uniform(-135, -45))
        whitened = np.maximum(img, 1.5 * _luma(img) + 0.5)  # (C, H, W)
        out.append(keep * img + (1 - keep) * whitened + flakes + flakes[::-1, ::-1])
    return np.stack(out)


def frost(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """c = (image weight, frost weight, texture zoom): weights of the image and the texture."""
    image_weight, frost_weight, zoom = c
    B, C, H, W = x.shape
    out = []
    for img, rng in zip(x, rngs, strict=True):
        texture = frost_texture(H, W, zoom, rng)  # (3, H, W)
        out.append(image_weight * img + frost_weight * (texture if C == 3 else _luma(texture)))
    return np.stack(out)


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square height map on a torus, `size` a power of two -> (size, size) in [0, 1].
    Each level sets the centre of every square, then the middle of every edge, to the mean of
    its four neighbours plus uniform noise whose amplitude shrinks by decay^2 per level (the
    reference's `wibble * uniform(-wibble, wibble)` with wibble /= decay)."""
    height = np.zeros((size, size))
    step, amplitude = size, 1.0
    while step >= 2:
        half = step // 2
        corners = height[0::step, 0::step]  # (n, n)
        mean = (corners + np.roll(corners, -1, 0) + np.roll(corners, -1, 1)
                + np.roll(corners, (-1, -1), (0, 1))) / 4  # fmt: skip
        height[half::step, half::step] = mean + amplitude * rng.uniform(-1, 1, mean.shape)
        centres = height[half::step, half::step]  # (n, n)
        top = (corners + np.roll(corners, -1, 1) + centres + np.roll(centres, 1, 0)) / 4
        height[0::step, half::step] = top + amplitude * rng.uniform(-1, 1, top.shape)
        left = (corners + np.roll(corners, -1, 0) + centres + np.roll(centres, 1, 1)) / 4
        height[half::step, 0::step] = left + amplitude * rng.uniform(-1, 1, left.shape)
        step, amplitude = half, amplitude / decay**2
    height -= height.min()
    return height / height.max()


def fog(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """c = (fog thickness, plasma decay: smaller is rougher); the result is rescaled so that
    the image's brightest value keeps its level where the fog is thinnest."""
    thickness, decay = c
    B, C, H, W = x.shape
    size = 1 << (max(H, W) - 1).bit_length()  # the next power of two
    out = []
    for img, rng in zip(x, rngs, strict=True):
        peak = img.max()
        haze = plasma_fractal(size, decay, rng)[:H, :W]  # (H, W)
        out.append((img + thickness * haze) * peak / (peak + thickness))
    return np.stack(out)


def brightness(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """HSV's V = max over channels raised by c (clipped at 1), hue and saturation kept."""
    value = x.max(axis=1, keepdims=True)  # (B, 1, H, W)
    raised = np.minimum(value + np.float32(c), 1)
    scale = np.divide(raised, value, out=np.zeros_like(value), where=value > 0)
    return np.where(value > 0, x * scale, raised)  # (B, C, H, W)

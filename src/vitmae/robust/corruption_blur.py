"""The blur corruptions of CIFAR-10-C / ImageNet-C (Hendrycks & Dietterich, ICLR 2019):
defocus, glass, motion and zoom blur, after `defocus_blur`, `glass_blur`, `motion_blur` and
`zoom_blur` of hendrycks/robustness `ImageNet-C/create_c/make_*_c.py`, written without OpenCV,
scikit-image or ImageMagick:

- defocus: the reference's anti-aliased disk kernel (OpenCV `GaussianBlur` of a disk, then
  `filter2D`, both with reflect-101 borders) as a torch convolution.
- glass: Gaussian blur (scikit-image's defaults: `nearest` border, truncate 4), the local pixel
  shuffle, blur again. The reference's "swap" `x[h, w], x[h', w'] = x[h', w'], x[h, w]` acts on
  numpy views, so it copies `x[h', w']` into `x[h, w]` and leaves `x[h', w']` as it was; that
  copy made the published data and is what `_glass_sources` reproduces, as an index map built
  in one Python loop over precomputed offsets (one step per pixel and iteration) and then
  applied to all channels at once.
- motion: ImageMagick's `MotionBlurImage(radius, sigma, angle)` rewritten (`motion_blur_image`):
  2 * ceil(radius) + 1 taps of a one-sided Gaussian along the angle, edge pixels repeated.
- zoom: the mean of the image and its centre crops zoomed back to full size (`clipped_zoom`).

Each corruption takes `x: (B, C, H, W)` float32 in [0, 1], the severity's parameter `c` and one
generator per image, and returns `(B, C, H, W)`, unclipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's defocus kernel: a normalised disk of `radius` on a grid of at least
    17 x 17, smoothed by a 3 x 3 (radius <= 8, else 5 x 5) Gaussian of std `alias_blur` with
    reflect-101 borders; zero rows and columns at its rim trimmed. -> (k, k)"""
    half, ksize = (8, 3) if radius <= 8 else (int(radius), 5)
    grid = np.arange(-half, half + 1)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = np.arange(ksize) - (ksize - 1) / 2
    gauss = np.exp(-(taps**2) / (2 * alias_blur**2))
    gauss /= gauss.sum()
    for axis in (0, 1):
        disk = ndimage.correlate1d(disk, gauss, axis=axis, mode="mirror")
    rows, cols = np.nonzero(disk)
    return disk[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def defocus_blur(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """c = (disk radius, anti-alias std), in pixels."""
    kernel = torch.from_numpy(_disk(*c)).float()  # (kh, kw), symmetric: conv = correlation
    kh, kw = kernel.shape
    B, C, H, W = x.shape
    planes = torch.from_numpy(x).reshape(B * C, 1, H, W)  # (B*C, 1, H, W)
    padded = F.pad(planes, (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect")  # reflect-101
    return F.conv2d(padded, kernel[None, None]).reshape(B, C, H, W).numpy()


def _glass_sources(
    height: int, width: int, delta: int, iterations: int, rng: np.random.Generator
) -> np.ndarray:
    """The reference's local shuffle as a map: `(H*W,)` flat index of the pixel that ends up
    at each position. In scan order (rows, then columns, both descending, `delta` from the
    border) each pixel takes the current value of the pixel at an offset drawn from
    [-delta, delta) in each axis."""
    rows = np.arange(height - delta, delta, -1)
    cols = np.arange(width - delta, delta, -1)
    targets = (rows[:, None] * width + cols[None, :]).ravel()  # (n,) in scan order
    sources = list(range(height * width))
    for _ in range(iterations):
        dx, dy = rng.integers(-delta, delta, size=(2, targets.size))  # (2, n)
        for t, s in zip(targets.tolist(), (targets + dy * width + dx).tolist(), strict=True):
            sources[t] = sources[s]
    return np.asarray(sources)


def glass_blur(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """c = (Gaussian std, largest shuffle offset, shuffle iterations)."""
    sigma, delta, iterations = c
    B, C, H, W = x.shape
    blurred = ndimage.gaussian_filter(x, (0, 0, sigma, sigma), mode="nearest", truncate=4.0)
    shuffled = np.stack(
        [
            img.reshape(C, H * W)[:, _glass_sources(H, W, delta, iterations, rng)]
            for img, rng in zip(blurred, rngs, strict=True)
        ]
    ).reshape(B, C, H, W)
    return ndimage.gaussian_filter(shuffled, (0, 0, sigma, sigma), mode="nearest", truncate=4.0)


def motion_blur_image(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion blur of `img: (..., H, W) -> (..., H, W)`: each pixel becomes the
    weighted sum of the 2 * ceil(radius) + 1 pixels on the ray from it at `angle` degrees
    (0: towards +x, 90: towards +y, rows going down), weight exp(-i^2 / 2 sigma^2) at step
    i, normalised; offsets round half down and pixels beyond the border repeat the edge."""
    steps = np.arange(2 * math.ceil(radius) + 1)
    weights = np.exp(-(steps**2) / (2 * sigma**2))
    weights /= weights.sum()
    theta = math.radians(angle)
    dx = np.ceil(steps * math.cos(theta) - 0.5).astype(int)
    dy = np.ceil(steps * math.sin(theta) - 0.5).astype(int)
    H, W = img.shape[-2:]
    out = np.zeros(img.shape, dtype=np.float32)
    for weight, oy, ox in zip(weights, dy, dx, strict=True):
        rows = np.clip(np.arange(H) + oy, 0, H - 1)
        cols = np.clip(np.arange(W) + ox, 0, W - 1)
        out += np.float32(weight) * img.take(rows, axis=-2).take(cols, axis=-1)
    return out


def motion_blur(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """c = (radius, sigma) of the line kernel; the angle is uniform in [-45, 45) degrees."""
    radius, sigma = c
    return np.stack(
        [
            motion_blur_image(img, radius, sigma, rng.uniform(-45, 45))
            for img, rng in zip(x, rngs, strict=True)
        ]
    )


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """`x: (..., H, W)`: its centre crop of ceil(side / factor) zoomed to round(crop side *
    factor) and cropped back to the centre -> (..., H, W). Bilinear with corners aligned is
    `scipy.ndimage.zoom(order=1)`, which the reference calls; torch does it faster."""
    H, W = x.shape[-2:]
    ch, cw = math.ceil(H / factor), math.ceil(W / factor)
    top, left = (H - ch) // 2, (W - cw) // 2
    crop = torch.from_numpy(np.ascontiguousarray(x[..., top : top + ch, left : left + cw]))
    size = (round(ch * factor), round(cw * factor))
    zoomed = F.interpolate(
        crop.float().reshape(-1, 1, ch, cw), size=size, mode="bilinear", align_corners=True
    ).reshape(*x.shape[:-2], *size)  # (..., ch * factor, cw * factor)
    top, left = (size[0] - H) // 2, (size[1] - W) // 2
    return zoomed[..., top : top + H, left : left + W].numpy()


def zoom_blur(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """c = (stop, step) of the zoom factors np.arange(1, stop, step)."""
    factors = np.arange(1, *c)
    out = x.copy()
    for factor in factors:
        out += clipped_zoom(x, factor)
    return out / (len(factors) + 1)

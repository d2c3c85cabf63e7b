"""The digital corruptions of CIFAR-10-C / ImageNet-C (Hendrycks & Dietterich, ICLR 2019):
contrast, elastic transform, pixelate and JPEG compression, after `contrast`,
`elastic_transform`, `pixelate` and `jpeg_compression` of hendrycks/robustness
`ImageNet-C/create_c/make_*_c.py`, written without OpenCV:

- elastic: a random affine warp of three points (OpenCV's `getAffineTransform` +
  `warpAffine`, reflect-101 border, here `scipy.ndimage.affine_transform` with `mirror`), then
  a displacement field of smoothed uniform noise (`map_coordinates`, `reflect`), both bilinear.
- pixelate: Pillow's BOX resize down to int(side * c) and back up, as two matrices that Pillow
  itself computes once per size, so a batch is two (torch) matrix products.
- jpeg: a Pillow JPEG round trip at the published quality (8-bit samples, as JPEG has).

Each corruption takes `x: (B, C, H, W)` float32 in [0, 1], the severity's parameter `c` and one
generator per image, and returns `(B, C, H, W)`, unclipped.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from scipy import ndimage


def contrast(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Each channel's deviation from its mean scaled by c."""
    means = x.mean(axis=(2, 3), keepdims=True)  # (B, C, 1, 1)
    return (x - means) * np.float32(c) + means


def _affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The affine map taking the three points `src: (3, 2)` to `dst: (3, 2)` -> (2, 3)."""
    return np.linalg.solve(np.hstack([src, np.ones((3, 1))]), dst).T


def _smooth_noise(height: int, width: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Uniform noise in [-1, 1) smoothed by a Gaussian of std `sigma` (scikit-image's `gaussian`
    with the reference's `reflect` border and truncate=3). -> (height, width)"""
    noise = rng.uniform(-1, 1, (height, width))
    return ndimage.gaussian_filter(noise, sigma, mode="reflect", truncate=3)


def _elastic(img: np.ndarray, c: tuple, rng: np.random.Generator) -> np.ndarray:
    """`img: (C, H, W) -> (C, H, W)`; c = (displacement scale, displacement smoothness std,
    largest affine jitter), in pixels."""
    alpha, sigma, jitter = c
    H, W = img.shape[1:]
    centre, reach = np.array([W // 2, H // 2], dtype=float), min(H, W) // 3
    src = np.array([centre + reach, [centre[0] + reach, centre[1] - reach], centre - reach])
    dst = src + rng.uniform(-jitter, jitter, size=(3, 2))  # (3, 2) of (x, y)
    # warpAffine samples the input at the inverse map; scipy wants it in (row, col) order
    back = _affine_from_points(dst, src)  # (2, 3) on (x, y, 1)
    matrix, offset = back[::-1, 1::-1], back[::-1, 2]
    warped = [ndimage.affine_transform(ch, matrix, offset, order=1, mode="mirror") for ch in img]
    dx, dy = (_smooth_noise(H, W, sigma, rng) * alpha for _ in range(2))  # dx drawn first
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    coords = np.stack([rows + dy, cols + dx])  # (2, H, W)
    return np.stack([ndimage.map_coordinates(ch, coords, order=1, mode="reflect") for ch in warped])


def elastic_transform(x: np.ndarray, c: tuple, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """c = (displacement scale, displacement smoothness std, largest affine jitter)."""
    return np.stack([_elastic(img, c, rng) for img, rng in zip(x, rngs, strict=True)])


@lru_cache(maxsize=64)
def _box_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Pillow's BOX resize of a line of `n_in` pixels to `n_out`, as a matrix: Pillow resizes
    the rows of an identity image, each row giving the weights of one input pixel.
    -> (n_out, n_in)"""
    identity = Image.fromarray(np.eye(n_in, dtype=np.float32))
    rows = np.asarray(identity.resize((n_out, n_in), Image.Resampling.BOX))  # (n_in, n_out)
    return rows.T.copy()


def pixelate(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Down to int(side * c) with a box filter, then back up with a box filter."""
    H, W = x.shape[-2:]
    h, w = max(1, int(H * c)), max(1, int(W * c))
    along_h = torch.from_numpy(_box_resize_matrix(h, H) @ _box_resize_matrix(H, h))  # (H, H)
    along_w = torch.from_numpy(_box_resize_matrix(w, W) @ _box_resize_matrix(W, w))  # (W, W)
    return (along_h @ torch.from_numpy(x) @ along_w.T).numpy()  # (B, C, H, W)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """`img: (C, H, W)` float through an 8-bit JPEG file -> (C, H, W)."""
    pixels = np.rint(img * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels[0] if len(pixels) == 1 else pixels.transpose(1, 2, 0)).save(
        buffer, format="JPEG", quality=quality
    )
    decoded = np.asarray(Image.open(buffer), dtype=np.float32) / 255  # (H, W) or (H, W, 3)
    return decoded[None] if decoded.ndim == 2 else decoded.transpose(2, 0, 1)


def jpeg_compression(x: np.ndarray, c: int, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """c = JPEG quality (Pillow's scale, 1..95)."""
    return np.stack([_jpeg(img, c) for img in x])

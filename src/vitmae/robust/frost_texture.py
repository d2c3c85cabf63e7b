"""A synthetic frost texture for the frost corruption of CIFAR-10-C / ImageNet-C (Hendrycks &
Dietterich, ICLR 2019).

The reference (`frost` in hendrycks/robustness `make_*_c.py`) overlays a random crop of one of
five frost photographs shipped with its scripts. Those photographs are not part of this
package, so this texture is synthetic, not the reference photos: bursts of thin bright ice
needles radiating from random points (the look of window frost) over a smooth, low-frequency
haze, its mean colour (bluish white) and contrast matched to the statistics of the reference
photographs (per-channel means 0.57, 0.66, 0.70 and a standard deviation of 0.11 in [0, 1]).
Frost results are therefore comparable in strength to the published ones, not identical.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage

FROST_MEAN = np.array([0.57, 0.66, 0.70], dtype=np.float32)  # R, G, B
FROST_STD = 0.11
PIXELS_PER_BURST = 600  # density of crystal bursts, in texture pixels
NEEDLES_PER_BURST = (5, 10)  # [low, high)
NEEDLE_LENGTH = (4.0, 24.0)  # texture pixels
HAZE_CELLS = 8  # the haze varies over about an eighth of the texture


def _standardise(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / max(float(a.std()), 1e-8)


def _needles(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Bursts of straight needles, brightest at their root, wrapped at the borders.
    -> (height, width)"""
    bursts = max(1, height * width // PIXELS_PER_BURST)
    per_burst = rng.integers(*NEEDLES_PER_BURST, size=bursts)
    n = int(per_burst.sum())
    root_y = np.repeat(rng.uniform(0, height, bursts), per_burst)  # (n,)
    root_x = np.repeat(rng.uniform(0, width, bursts), per_burst)
    angle = rng.uniform(0, 2 * math.pi, n)
    length = rng.uniform(*NEEDLE_LENGTH, n)
    brightness = rng.uniform(0.5, 1.0, n)
    t = np.arange(0, NEEDLE_LENGTH[1], 0.5)[None, :]  # (1, m): half-pixel steps along a needle
    on = t <= length[:, None]  # (n, m)
    rows = np.floor(root_y[:, None] + t * np.sin(angle)[:, None]).astype(int) % height  # (n, m)
    cols = np.floor(root_x[:, None] + t * np.cos(angle)[:, None]).astype(int) % width
    value = brightness[:, None] * (1 - t / NEEDLE_LENGTH[1])  # (n, m): fades towards the tip
    ice = np.zeros((height, width))
    np.maximum.at(ice, (rows[on], cols[on]), value[on])
    return ndimage.gaussian_filter(ice, 0.6, mode="wrap")


def frost_texture(height: int, width: int, zoom: float, rng: np.random.Generator) -> np.ndarray:
    """A frost texture drawn at (height, width) / zoom pixels and shrunk by `zoom` (box
    average), as the reference shrinks its photographs. -> (3, height, width) in [0, 1]"""
    big_h, big_w = math.ceil(height / zoom), math.ceil(width / zoom)
    coarse = rng.standard_normal((HAZE_CELLS, HAZE_CELLS)).astype(np.float32)
    haze = np.asarray(Image.fromarray(coarse).resize((big_w, big_h), Image.Resampling.BICUBIC))
    pattern = _standardise(_needles(big_h, big_w, rng)) + 0.5 * _standardise(haze)
    if (big_h, big_w) != (height, width):
        shrunk = Image.fromarray(pattern.astype(np.float32)).resize(
            (width, height), Image.Resampling.BOX
        )
        pattern = np.asarray(shrunk, dtype=np.float64)
    gray = FROST_STD * _standardise(pattern)  # (height, width)
    return np.clip(FROST_MEAN[:, None, None] + gray[None].astype(np.float32), 0, 1)

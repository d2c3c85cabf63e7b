"""The noise corruptions of CIFAR-10-C / ImageNet-C (Hendrycks & Dietterich, ICLR 2019):
Gaussian, shot (Poisson) and impulse (salt-and-pepper) noise, drawn independently for every
pixel and channel, as `gaussian_noise`, `shot_noise` and `impulse_noise` of
hendrycks/robustness `ImageNet-C/create_c/make_*_c.py` define them.

Each function takes `x: (B, C, H, W)` float32 in [0, 1], the severity's parameter `c` and one
generator per image, and returns `(B, C, H, W)`, unclipped (the caller clips to [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def gaussian_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """x + N(0, c^2) for every value; c is the noise's standard deviation."""
    noise = np.stack([rng.standard_normal(x.shape[1:], dtype=np.float32) for rng in rngs])
    return x + np.float32(c) * noise  # (B, C, H, W)


def shot_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Photon counting: Poisson(c * x) / c, c photons per unit intensity (fewer: noisier)."""
    return np.stack([rng.poisson(c * img) / c for img, rng in zip(x, rngs, strict=True)])


def impulse_noise(x: np.ndarray, c: float, rngs: Sequence[np.random.Generator]) -> np.ndarray:
    """Each value is replaced with probability c by 0 or by 1 (even odds): scikit-image's
    `random_noise(mode="s&p", amount=c)`, which the reference calls."""
    out = x.copy()
    for img, rng in zip(out, rngs, strict=True):
        hit = rng.random(img.shape) < c  # (C, H, W)
        salt = rng.random(img.shape) < 0.5
        img[hit] = salt[hit]
    return out

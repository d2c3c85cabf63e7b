"""The 15 common corruptions of CIFAR-10-C and ImageNet-C (Hendrycks & Dietterich,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", ICLR 2019),
written anew from the definitions in hendrycks/robustness
(`ImageNet-C/create_c/make_cifar_c.py`, `make_imagenet_c.py`) with numpy, scipy, torch and
Pillow only:

    from vitmae.robust.corruptions import CORRUPTIONS, SEVERITIES, corrupt
    out = corrupt(images, "fog", severity=3, seed=0, indices=batch_indices)
    # images: (B, C, H, W) uint8, or float in [0, 1]; C = 1 or 3 -> float32 (B, C, H, W) in [0, 1]

- Apply it to the images at their stored size, before any model transform (resize, normalise).
- Tables (`corruption_tables.py`): CIFAR-10-C's when the longer side is at most 64 px,
  ImageNet-C's above; pixel-valued parameters are used as published, not rescaled, so an
  image far from 32 or 224 px gets blurs and displacements of the published pixel sizes.
- Seeds: image i of the batch draws from its own generator, PCG64 seeded with (seed, the
  corruption's index in CORRUPTIONS, indices[i]); `indices` defaults to 0..B-1, so pass the
  data set indices to make an image's corruption independent of the batch it is in. The
  severities of one corruption share their random draws (common random numbers), so a higher
  severity strengthens the same pattern. No global random state is read or written.
- One channel is corrupted natively (noise is drawn per channel, luma of a grey image is
  itself), not through three replicated channels.
- Where this differs from the reference:
  - the frost texture is synthetic (`frost_texture.py`), not the reference's photographs;
  - motion blur (and snow's streaks) is our own line kernel after ImageMagick's;
  - the random draws are our generators', not the reference's global `np.random` stream, so
    no output reproduces a released file; their distributions are the same;
  - the work is done in float32 and returned unrounded: the reference rounds to 8 bits inside
    motion blur, snow, pixelate and glass blur, and its released files are uint8 (CIFAR-10-C
    floored; ImageNet-C also saved as JPEG at quality 85); our JPEG is 8-bit, as JPEG is;
  - non-square images are handled per axis (the reference assumes square ones).

Cost on CPU: per-image Python loops for the random corruptions; glass blur builds its shuffle
map in one Python step per pixel and iteration (3 x 220^2 steps at ImageNet severity 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from vitmae.errors import ConfigError

from .corruption_blur import defocus_blur, glass_blur, motion_blur, zoom_blur
from .corruption_digital import contrast, elastic_transform, jpeg_compression, pixelate
from .corruption_noise import gaussian_noise, impulse_noise, shot_noise
from .corruption_tables import params_for
from .corruption_weather import brightness, fog, frost, snow

Corruption = Callable[[np.ndarray, object, Sequence[np.random.Generator]], np.ndarray]

GROUPS: dict[str, dict[str, Corruption]] = {  # the paper's four groups, in its order
    "noise": {
        "gaussian_noise": gaussian_noise,
        "shot_noise": shot_noise,
        "impulse_noise": impulse_noise,
    },
    "blur": {
        "defocus_blur": defocus_blur,
        "glass_blur": glass_blur,
        "motion_blur": motion_blur,
        "zoom_blur": zoom_blur,
    },
    "weather": {"snow": snow, "frost": frost, "fog": fog, "brightness": brightness},
    "digital": {
        "contrast": contrast,
        "elastic_transform": elastic_transform,
        "pixelate": pixelate,
        "jpeg_compression": jpeg_compression,
    },
}
_FUNCTIONS: dict[str, Corruption] = {n: f for group in GROUPS.values() for n, f in group.items()}
CORRUPTIONS: tuple[str, ...] = tuple(_FUNCTIONS)
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
RANDOM_CORRUPTIONS = frozenset(  # the ones that draw random numbers
    {"gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow",
     "frost", "fog", "elastic_transform"}
)  # fmt: skip


def check_corruption(name: str, severity: int) -> None:
    """Raise ConfigError naming `name` or `severity` if either is not a published one."""
    if name not in _FUNCTIONS:
        raise ConfigError(f"unknown corruption {name!r}; choose one of {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ConfigError(
            f"corruption severity {severity!r} is not one of {', '.join(map(str, SEVERITIES))}"
        )


def _as_float_array(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) uint8 or float in [0, 1] -> numpy float32 copy, clamped to [0, 1]."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, C, H, W) with C = 1 or 3, got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        x = images.float() / 255
    elif images.is_floating_point():
        x = images.float().clamp(0, 1)
    else:
        raise ValueError(f"images must be uint8 or float, got {images.dtype}")
    return x.detach().cpu().numpy().copy()


def corrupt(
    images: torch.Tensor,
    name: str,
    severity: int,
    seed: int,
    indices: Sequence[int] | None = None,
) -> torch.Tensor:
    """Corruption `name` at `severity` (1..5) of `images: (B, C, H, W)` (uint8, or float in
    [0, 1]; C = 1 or 3) -> float32 (B, C, H, W) in [0, 1], on the images' device. The same
    (images, name, severity, seed, indices) give the same bits; `indices: (B,)` non-negative
    ids of the images (default 0..B-1) seed each image's generator."""
    check_corruption(name, severity)
    x = _as_float_array(images)  # (B, C, H, W)
    B, C, H, W = x.shape
    ids = range(B) if indices is None else [int(i) for i in indices]
    if len(ids) != B:
        raise ValueError(f"{len(ids)} indices for a batch of {B} images")
    stream = CORRUPTIONS.index(name)
    rngs = [np.random.Generator(np.random.PCG64([seed, stream, i])) for i in ids]
    c = params_for(max(H, W))[name][severity - 1]
    out = _FUNCTIONS[name](x, c, rngs)  # (B, C, H, W)
    return torch.from_numpy(np.clip(out, 0, 1).astype(np.float32)).to(images.device)

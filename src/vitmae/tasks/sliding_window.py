"""Sliding-window inference: a model that takes S^3 cubes segments a volume of any size.

As MONAI's `sliding_window_inference` with constant weights: cubes of side S start every
round(S * (1 - overlap)) voxels along each axis, the last one flush with the far end, so that
every voxel is covered; a volume smaller than S along an axis is padded (with the value that
0 has after normalisation) and the padding cut off again. Each voxel's logits are the mean
over the cubes that hold it. `logits_fn` maps (N, C, S, S, S) cubes to (N, K, S, S, S)
logits: a torch model, or an ONNX session (`vitmae.infer.model.InferenceModel.logits`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from vitmae.data.volume_seg_items import pad_end


@dataclass(frozen=True)
class Window:
    """How a volume is cut: cubes of side `size` overlapping by `overlap` of a side, padded
    with `pad_value` (normalised 0) where the volume is smaller."""

    size: int
    overlap: float = 0.5
    pad_value: float = 0.0


def window_starts(n: int, size: int, overlap: float) -> list[int]:
    """The start of each window of `size` along an axis of n >= size voxels, overlapping by
    `overlap` of a side: 0, step, 2 step, ... and n - size last."""
    if n <= size:
        return [0]
    step = max(1, round(size * (1 - overlap)))
    starts = list(range(0, n - size, step))
    return starts + [n - size]


@torch.no_grad()
def sliding_window(logits_fn: Callable[[torch.Tensor], torch.Tensor], vol: torch.Tensor,
                   size: int, overlap: float = 0.5, batch: int = 4,
                   pad_value: float = 0.0) -> torch.Tensor:
    """vol (C, D, H, W) -> (K, D, H, W) float32 logits, averaged over overlapping cubes."""
    C, D, H, W = vol.shape
    vol = pad_end(vol, (size, size, size), pad_value)  # (C, D', H', W'), each side >= size
    dims = vol.shape[1:]
    corners = list(itertools.product(*(window_starts(n, size, overlap) for n in dims)))
    out = count = None
    for i in range(0, len(corners), batch):
        chunk = corners[i:i + batch]
        cubes = torch.stack([vol[:, z:z + size, y:y + size, x:x + size]
                             for z, y, x in chunk])  # (N, C, S, S, S)
        logits = logits_fn(cubes).float()  # (N, K, S, S, S)
        if out is None:
            out = torch.zeros(logits.shape[1], *dims)  # (K, D', H', W')
            count = torch.zeros(1, *dims)  # (1, D', H', W')
        for (z, y, x), lg in zip(chunk, logits, strict=True):
            out[:, z:z + size, y:y + size, x:x + size] += lg
            count[:, z:z + size, y:y + size, x:x + size] += 1
    return (out / count)[:, :D, :H, :W]  # (K, D, H, W)

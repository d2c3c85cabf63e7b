"""Segmentation masks as files: one class id per pixel, `VOID` (255) for pixels that the loss
and the metrics ignore (PASCAL VOC's convention), and VOC's colour palette, with which a mask
is written as a palette PNG (the pixel value is the class; viewers show the colours).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

VOID = 255  # the void label: ignored by the loss and the metrics, padding of batched masks


def voc_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8: VOC's colour map, class bits spread over the high bits of R, G, B."""
    palette = np.zeros((n, 3), np.uint8)
    for k in range(n):
        c, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):  # bit j of the class sets bit 7 - j//3 of a channel
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[k] = (r, g, b)
    return palette


def colorize(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) class ids 0-255 -> (3, H, W) float RGB in [0, 1]."""
    rgb = torch.from_numpy(voc_palette())[mask.long().clamp(0, 255)]  # (H, W, 3)
    return rgb.permute(2, 0, 1).float() / 255


def save_palette_png(mask: torch.Tensor, path: Path) -> None:
    """(H, W) class ids -> a palette ('P') PNG, as VOC's SegmentationClass files."""
    im = Image.fromarray(mask.to(torch.uint8).numpy(), mode="P")
    im.putpalette(voc_palette().flatten().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)

"""Joint image + mask transforms for segmentation.

Training follows the DeepLab recipe at CPU scale: random scale, random crop of img_size
(padded where the scaled image is smaller), horizontal flip, the same random draws for the
photo and its label map. It is written on plain tensors and crops *before* it resizes: only
the part of the photo that lands in the crop is resampled, and no per-op dispatch of
`torchvision.transforms.v2` is paid per item (timings: `benchmarks/RESULTS.md`). The photo is
resampled bilinearly with antialiasing, the mask with nearest neighbours on the same
pixel-centre grid ("nearest-exact"), so labels are never blended and stay aligned with the
photo; padding is 0 in the photo and 255 (void, ignored by the loss and the metrics) in the
mask.

Evaluation resizes the image to img_size x img_size for the model and leaves the mask at its
original size (metrics are computed there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2

from vitmae.data.palette import VOID

SCALE_RANGE = (0.75, 1.5)  # of img_size for the shorter side (DeepLab: 0.5-2 of the photo)


def crop_window(n0: int, f: float, size: int) -> tuple[int, int, int, int]:
    """One axis of a random `size`-long crop of a length-`n0` axis scaled by `f`.

    -> (a, b, n, o): the source span [a, b) is resized to n pixels placed at offset o of the
    crop. A scaled axis shorter than the crop is taken whole at a random offset (the rest is
    padding); a longer one is cut at a random start, snapped outwards to whole source pixels
    (the span's scale then differs from f by under one source pixel over the crop).
    """
    n = max(1, round(n0 * f))  # the axis's length once scaled
    if n <= size:
        return 0, n0, n, int(torch.randint(size - n + 1, ()))
    t = int(torch.randint(n - size + 1, ()))  # the crop's start, in scaled pixels
    a = min(math.floor(t / f), n0 - 1)
    return a, max(a + 1, min(n0, math.ceil((t + size) / f))), size, 0


class ScaleCropFlip:
    """(img (3, H0, W0) uint8, mask (H0, W0) integer) -> (3, S, S) float32 normalized,
    (S, S) int64: shorter side scaled to S x U(scale), a random S x S crop, a flip."""

    def __init__(self, img_size: int, mean: tuple, std: tuple,
                 scale: tuple[float, float] = SCALE_RANGE):
        self.size, self.scale = img_size, scale
        self.mean = torch.tensor(mean).view(3, 1, 1) * 255  # on the 0-255 scale
        self.std = torch.tensor(std).view(3, 1, 1) * 255

    def __call__(self, img: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        img, mask = img.as_subclass(Tensor), mask.as_subclass(Tensor)  # tv_tensors welcome
        S, (H0, W0) = self.size, mask.shape
        f = S * torch.empty(()).uniform_(*self.scale).item() / min(H0, W0)
        ya, yb, h, oy = crop_window(H0, f, S)
        xa, xb, w, ox = crop_window(W0, f, S)
        part = F.interpolate(img[None, :, ya:yb, xa:xb], size=(h, w), mode="bilinear",
                             antialias=True, align_corners=False)[0]  # (3, h, w) uint8
        labels = F.interpolate(mask[None, None, ya:yb, xa:xb].to(torch.uint8), size=(h, w),
                               mode="nearest-exact")[0, 0]  # (h, w)
        out_img = torch.zeros(3, S, S, dtype=torch.uint8)
        out_img[:, oy:oy + h, ox:ox + w] = part
        out_mask = torch.full((S, S), VOID, dtype=torch.uint8)
        out_mask[oy:oy + h, ox:ox + w] = labels
        if torch.rand(()) < 0.5:
            out_img, out_mask = out_img.flip(-1), out_mask.flip(-1)
        return (out_img.float() - self.mean) / self.std, out_mask.long()


def train_joint_transform(img_size: int, mean: tuple, std: tuple) -> ScaleCropFlip:
    """(Image (3, H0, W0) uint8, Mask (H0, W0)) -> (3, S, S) float32 normalized, (S, S)."""
    return ScaleCropFlip(img_size, mean, std)


def eval_image_transform(img_size: int, mean: tuple, std: tuple) -> v2.Compose:
    """Image (3, H0, W0) uint8 -> (3, S, S) float32 normalized; the aspect ratio is not kept."""
    return v2.Compose([
        v2.Resize((img_size, img_size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
    ])


def pad_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(H0, W0) -> (H, W) int64, the original at the top left, the rest VOID (for batching)."""
    out = torch.full(size, VOID, dtype=torch.int64)
    out[: mask.shape[0], : mask.shape[1]] = mask
    return out

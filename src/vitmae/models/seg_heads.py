"""Segmentation decode heads: patch tokens of the ViT encoder -> per-pixel class logits.

`LinearHead` is Segmenter's linear decoder (Strudel et al. 2021): one linear map of each
patch token to K logits on the (h, w) grid, upsampled bilinearly to (H, W).
`PUPHead` follows SETR (Zheng et al. 2021): tokens from several depths (as SETR-MLA) are
normalised, concatenated and fused, mixed by two 3x3 convolutions on the patch grid (as
SETR-PUP's first stage), then progressive upsampling (PUP) doubles the resolution per stage
with a 3x3 convolution at each new resolution. Unlike SETR, each stage also sees the input
image average-pooled to its resolution (a U-Net-like skip), and the stages stop at half the
input resolution: the class logits made there are upsampled bilinearly to (H, W) and a
per-pixel linear map of the image is added. The patch tokens know *what* is there, the pixels
say *where* its edges are (thin digit strokes are 1-3 px; a linear head decides per patch),
and no convolution runs at full resolution, where it would cost as much as the encoder.
Shapes: B batch, H, W image, p patch, h, w = H//p, W//p, L = h*w, D width, K classes.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def tokens_to_grid(tokens: torch.Tensor, hw: tuple[int, ...]) -> torch.Tensor:
    """(B, L, D) -> (B, D, h, w), or (B, D, d, h, w) for a 3-D grid `hw` = (d, h, w); patches
    in raster order (as PatchEmbed and PatchEmbed3d flatten them)."""
    B, L, D = tokens.shape
    return tokens.transpose(1, 2).reshape(B, D, *hw)  # (B, D, h, w)


def level_indices(depth: int, levels: int) -> list[int]:
    """Blocks whose outputs a multi-level head reads: evenly spaced, ending at the last.

    depth 12, levels 4 -> [2, 5, 8, 11] (SETR-MLA reads blocks 6, 12, 18, 24 of 24).
    """
    step = depth / min(levels, depth)
    return sorted({math.ceil(step * (i + 1)) - 1 for i in range(min(levels, depth))})


class LinearHead(nn.Module):
    """Segmenter's linear decoder on the patch tokens of block `index` (as a main head: the
    last block, normalised). On volumes (a (d, h, w) grid) the logits are upsampled
    trilinearly to (D, H, W)."""

    def __init__(self, embed_dim: int, num_classes: int, index: int):
        super().__init__()
        self.indices = [index]
        self.proj = nn.Linear(embed_dim, num_classes)

    def forward(self, feats: list[torch.Tensor], hw: tuple[int, ...],
                imgs: torch.Tensor) -> torch.Tensor:
        """feats: [(B, L, D)], imgs (B, C, H, W) (only its size is used) -> (B, K, H, W);
        volumes: imgs (B, C, D, H, W) -> (B, K, D, H, W)."""
        logits = tokens_to_grid(self.proj(feats[0]), hw)  # (B, L, K) -> (B, K, h, w)
        mode = "trilinear" if len(hw) == 3 else "bilinear"
        return F.interpolate(logits, size=imgs.shape[2:], mode=mode, align_corners=False)


def conv_norm_act(c_in: int, c_out: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: independent of the batch size and of the number of DDP ranks
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                         nn.GroupNorm(min(8, c_out), c_out), nn.ReLU(inplace=True))


class PUPHead(nn.Module):
    """Multi-level fusion, two 3x3 convolutions on the patch grid, then log2(p) - 1 stages of
    (upsample x2, conv 3x3, norm, ReLU) up to (H/2, W/2), class logits there, bilinear to
    (H, W), plus a per-pixel linear map of the image."""

    def __init__(self, embed_dim: int, num_classes: int, depth: int, patch_size: int,
                 in_chans: int, levels: int = 4, channels: int = 64, min_channels: int = 16):
        super().__init__()
        self.indices = level_indices(depth, levels)
        self.norms = nn.ModuleList(nn.LayerNorm(embed_dim, eps=1e-6) for _ in self.indices)
        # the 1x1 fusion is a Linear on the tokens: one matmul, faster than a CPU 1x1 conv
        self.fuse = nn.Linear(embed_dim * len(self.indices), channels)
        self.fuse_act = nn.Sequential(nn.GroupNorm(8, channels), nn.ReLU(inplace=True))
        # SETR-PUP's first convolutions run on the patch grid: there they are cheap, and two 3x3
        # layers see 5x5 patches, so that the patches of one object agree on what it is
        self.context = nn.Sequential(*(conv_norm_act(channels, channels) for _ in range(2)))
        n_stages = max(0, round(math.log2(patch_size)) - 1)
        widths = [max(channels >> i, min_channels) for i in range(n_stages + 1)]
        self.stages = nn.ModuleList(conv_norm_act(a + in_chans, b)
                                    for a, b in zip(widths, widths[1:], strict=False))
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)
        self.pixel = nn.Linear(in_chans, num_classes)  # where: per-pixel evidence
        # the convolution weights channels-last like their inputs, so that their gradients come
        # out in the weights' own layout: DDP's gradient buckets take the weights' strides and
        # warn on every rank (and copy) when a gradient's differ
        self.to(memory_format=torch.channels_last)

    def forward(self, feats: list[torch.Tensor], hw: tuple[int, int],
                imgs: torch.Tensor) -> torch.Tensor:
        """feats: one (B, L, D) per level, imgs (B, C, H, W) -> (B, K, H, W) logits."""
        x = torch.cat([n(f) for n, f in zip(self.norms, feats, strict=True)],
                      dim=-1)  # (B, L, levels*D)
        x = self.fuse_act(tokens_to_grid(self.fuse(x), hw))  # (B, channels, h, w)
        # channels-last: the CPU's small 3x3 convolutions run faster in it
        x = self.context(x.contiguous(memory_format=torch.channels_last))  # (B, channels, h, w)
        for i, stage in enumerate(self.stages, start=1):
            x = F.interpolate(x, scale_factor=2, mode="bilinear",
                              align_corners=False)  # (B, c_i, 2^i h, 2^i w)
            # the size as Python ints, not x.shape: ONNX export needs a constant pooling size
            size = (hw[0] << i, hw[1] << i)
            pixels = F.adaptive_avg_pool2d(imgs, size)  # (B, C, 2^i h, 2^i w)
            # back to channels-last: the concatenation with the (NCHW) image comes out NCHW
            x = torch.cat([x, pixels], dim=1).contiguous(memory_format=torch.channels_last)
            x = stage(x)  # (B, c_i + C, 2^i h, 2^i w) -> (B, c_{i+1}, 2^i h, 2^i w)
        logits = F.interpolate(self.classifier(x), size=imgs.shape[-2:], mode="bilinear",
                               align_corners=False)  # (B, K, H/2, W/2) -> (B, K, H, W)
        return logits + self.pixel(imgs.movedim(1, -1)).movedim(-1, 1)  # (B, K, H, W)

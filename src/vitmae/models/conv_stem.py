"""Convolutional stem of a hybrid ViT (Xiao et al. 2021, "Early convolutions help transformers
see better"), masked for MAE as ConvMAE's masked convolutions (Gao et al. 2022).

log2(p) stages of (3x3 convolution of stride 2, LayerNorm over channels, GELU) take
(B, C, H, W) down to stride p, widths doubling from `width`; a 1x1 projection to D makes the
tokens. Volumes (B, C, D, H, W) get the same stem in 3-D (3x3x3 convolutions, tokens of p^3
voxels). It replaces `PatchEmbed` under the same name (`patch_embed`), so the projection
keeps timm's name `patch_embed.proj` (a (D, c, 1, 1) convolution, as in timm's hybrid ViTs)
and the stages sit under `patch_embed.stem.*`. The stages' feature maps are also what a U-Net-style
segmentation head takes as skips (`vitmae.models.unet_head`).

MAE: a removed patch must not reach the kept tokens through the overlapping 3x3 windows, so
every stage's input is multiplied by the kept-patch mask at its resolution (removed regions
are zero before every convolution, as ConvMAE). The norm is per position, so the mask does
not shift the statistics of kept positions either.
Shapes: B batch, C channels, H, W image, p patch, h, w = H//p, W//p, L = h*w, D width.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitmae.variants import check_grid, check_stem_patch

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of each position of a (B, c, H, W) or (B, c, D, H, W) map
    (ConvNeXt's LayerNorm2d): independent of the batch, of the size and of which positions
    are masked."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.movedim(1, -1), self.normalized_shape, self.weight, self.bias,
                         self.eps)  # (B, H, W, c) or (B, D, H, W, c)
        return x.movedim(-1, 1)  # (B, c, H, W) or (B, c, D, H, W)


class StemStage(nn.Module):
    """(B, c_in, *S) -> (B, c_out, *S/2): 3x3(x3) convolution of stride 2, norm, GELU."""

    def __init__(self, c_in: int, c_out: int, dims: int = 2):
        super().__init__()
        self.conv = CONV[dims](c_in, c_out, 3, stride=2, padding=1, bias=False)  # norm follows
        self.norm = ChannelNorm(c_out, eps=1e-6)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def stem_widths(patch_size: int, width: int) -> list[int]:
    """Stage widths: one stride-2 stage per halving down to p, doubling from `width`."""
    check_stem_patch(patch_size)
    return [width << i for i in range(patch_size.bit_length() - 1)]


def keep_map(ids_keep: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """ids_keep (B, L_keep) -> (B, 1, h, w), or (B, 1, d, h, w) for a 3-D grid: 1 on kept
    patches, 0 on removed ones."""
    B = ids_keep.shape[0]
    keep = torch.zeros(B, math.prod(grid), device=ids_keep.device)
    keep.scatter_(1, ids_keep, 1.0)  # (B, L)
    return keep.view(B, 1, *grid)  # (B, 1, h, w) or (B, 1, d, h, w)


class ConvStem(nn.Module):
    """(B, C, H, W) -> (B, L, D) tokens through a strided convolutional stem; `features` gives
    the stages' maps, (B, c_i, H/2^(i+1), W/2^(i+1)) for i = 0 .. log2(p)-1. An `img_size`
    of three sizes (D, H, W) makes it the 3-D stem of volumes (B, C, D, H, W)."""

    def __init__(self, img_size: tuple[int, ...], patch_size: int, in_chans: int,
                 embed_dim: int, width: int = 32):
        super().__init__()
        check_grid(img_size, patch_size)
        dims = len(img_size)
        self.img_size, self.patch_size = tuple(img_size), patch_size
        self.grid_size = tuple(s // patch_size for s in img_size)  # (h, w) or (d, h, w)
        self.num_patches = math.prod(self.grid_size)
        self.widths = stem_widths(patch_size, width)
        self.stem = nn.ModuleList(StemStage(a, b, dims) for a, b in
                                  zip([in_chans, *self.widths], self.widths, strict=False))
        # channels-last, as the maps (the per-position norm leaves them so): faster small CPU
        # convolutions, and gradients in the weights' own layout, which DDP's buckets expect.
        # Not the projection: it runs as a matmul on the flattened weight, whose gradient is
        # contiguous
        self.memory_format = CHANNELS_LAST[dims]
        self.stem.to(memory_format=self.memory_format)
        self.proj = CONV[dims](self.widths[-1], embed_dim, kernel_size=1)

    def features(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        """x (B, C, H, W), keep None or (B, 1, h, w) (1 = kept) -> the stages' maps, each
        (B, c_i, H/2^(i+1), W/2^(i+1)); with `keep`, removed patches are zeroed at every
        stage's input. Volumes: (B, C, D, H, W) and (B, 1, d, h, w) alike."""
        size = tuple(x.shape[2:])
        if size != self.img_size:
            raise ValueError(f"expected inputs of {self.img_size}, got {size}")
        maps = []
        x = x.contiguous(memory_format=self.memory_format)
        for stage in self.stem:
            if keep is not None:  # nearest: each patch is an exact block at every stride
                x = x * F.interpolate(keep.to(x.dtype), size=x.shape[2:],
                                      mode="nearest")  # (B, c, H', W') or (B, c, D', H', W')
            x = stage(x)
            maps.append(x)
        return maps

    def project(self, last: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """last stage's map (B, c, h, w) or (B, c, d, h, w), ids_keep None or (B, L_keep)
        -> (B, L_keep, D)."""
        x = last.flatten(2).transpose(1, 2)  # (B, L, c), patches row-major
        if ids_keep is not None:
            x = x.take_along_dim(ids_keep.unsqueeze(-1), dim=1)  # (B, L_keep, c)
        return F.linear(x, self.proj.weight.flatten(1), self.proj.bias)  # (B, L_keep, D)

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W) or (B, C, D, H, W), ids_keep: (B, L_keep) or None -> (B, L_keep, D)
        or (B, L, D)."""
        keep = None if ids_keep is None else keep_map(ids_keep, self.grid_size)
        return self.project(self.features(x, keep)[-1], ids_keep)

"""Convolutional stem of a hybrid ViT (Xiao et al. 2021, "Early convolutions help transformers
see better"), masked for MAE as ConvMAE's masked convolutions (Gao et al. 2022).

log2(p) stages of (3x3 convolution of stride 2, LayerNorm over channels, GELU) take
(B, C, H, W) down to stride p, widths doubling from `width`; a 1x1 projection to D makes the
tokens. It replaces `PatchEmbed` under the same name (`patch_embed`), so the projection keeps
timm's name `patch_embed.proj` (a (D, c, 1, 1) convolution, as in timm's hybrid ViTs) and the
stages sit under `patch_embed.stem.*`. The stages' feature maps are also what a U-Net-style
segmentation head takes as skips (`vitmae.models.unet_head`).

MAE: a removed patch must not reach the kept tokens through the overlapping 3x3 windows, so
every stage's input is multiplied by the kept-patch mask at its resolution (removed regions
are zero before every convolution, as ConvMAE). The norm is per position, so the mask does
not shift the statistics of kept positions either.
Shapes: B batch, C channels, H, W image, p patch, h, w = H//p, W//p, L = h*w, D width.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitmae.variants import check_grid, check_stem_patch


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each position of a (B, c, H, W) map (ConvNeXt's):
    independent of the batch, of the image size and of which positions are masked."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)  # (B, H, W, c)
        return x.permute(0, 3, 1, 2)  # (B, c, H, W)


class StemStage(nn.Module):
    """(B, c_in, H, W) -> (B, c_out, H/2, W/2): 3x3 convolution of stride 2, norm, GELU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False)  # norm follows
        self.norm = LayerNorm2d(c_out, eps=1e-6)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def stem_widths(patch_size: int, width: int) -> list[int]:
    """Stage widths: one stride-2 stage per halving down to p, doubling from `width`."""
    check_stem_patch(patch_size)
    return [width << i for i in range(patch_size.bit_length() - 1)]


def keep_map(ids_keep: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """ids_keep (B, L_keep) -> (B, 1, h, w): 1 on kept patches, 0 on removed ones."""
    B, (h, w) = ids_keep.shape[0], grid
    keep = torch.zeros(B, h * w, device=ids_keep.device)
    keep.scatter_(1, ids_keep, 1.0)  # (B, L)
    return keep.view(B, 1, h, w)  # (B, 1, h, w)


class ConvStem(nn.Module):
    """(B, C, H, W) -> (B, L, D) tokens through a strided convolutional stem; `features` gives
    the stages' maps, (B, c_i, H/2^(i+1), W/2^(i+1)) for i = 0 .. log2(p)-1."""

    def __init__(self, img_size: tuple[int, int], patch_size: int, in_chans: int,
                 embed_dim: int, width: int = 32):
        super().__init__()
        H, W = img_size
        check_grid((H, W), patch_size)
        self.img_size, self.patch_size = (H, W), patch_size
        self.grid_size = (H // patch_size, W // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.widths = stem_widths(patch_size, width)
        self.stem = nn.ModuleList(StemStage(a, b) for a, b in
                                  zip([in_chans, *self.widths], self.widths, strict=False))
        # channels-last, as the maps (the per-position norm leaves them so): faster small CPU
        # convolutions, and gradients in the weights' own layout, which DDP's buckets expect.
        # Not the projection: it runs as a matmul on the flattened weight, whose gradient is
        # contiguous
        self.stem.to(memory_format=torch.channels_last)
        self.proj = nn.Conv2d(self.widths[-1], embed_dim, kernel_size=1)

    def features(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        """x (B, C, H, W), keep None or (B, 1, h, w) (1 = kept) -> the stages' maps, each
        (B, c_i, H/2^(i+1), W/2^(i+1)); with `keep`, removed patches are zeroed at every
        stage's input."""
        if x.shape[-2:] != self.img_size:
            raise ValueError(f"expected images of {self.img_size}, got {tuple(x.shape[-2:])}")
        maps = []
        x = x.contiguous(memory_format=torch.channels_last)
        for stage in self.stem:
            if keep is not None:  # nearest: each patch is an exact block at every stride
                x = x * F.interpolate(keep.to(x.dtype), size=x.shape[-2:],
                                      mode="nearest")  # (B, c, H', W')
            x = stage(x)
            maps.append(x)
        return maps

    def project(self, last: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """last stage's map (B, c, h, w), ids_keep None or (B, L_keep) -> (B, L_keep, D)."""
        x = last.flatten(2).transpose(1, 2)  # (B, L, c), patches row-major
        if ids_keep is not None:
            x = x.take_along_dim(ids_keep.unsqueeze(-1), dim=1)  # (B, L_keep, c)
        return F.linear(x, self.proj.weight.flatten(1), self.proj.bias)  # (B, L_keep, D)

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W), ids_keep: (B, L_keep) or None -> (B, L_keep, D) or (B, L, D)."""
        keep = None if ids_keep is None else keep_map(ids_keep, self.grid_size)
        return self.project(self.features(x, keep)[-1], ids_keep)

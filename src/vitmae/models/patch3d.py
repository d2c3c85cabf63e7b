"""Cubic patches of volumes: cutting (B, C, D, H, W) into p x p x p tokens and back, and the
Conv3d patch embedding of a 3-D ViT.

The 3-D counterparts of `patchify` / `unpatchify` (`vitmae.models.mae`) and `PatchEmbed`
(`vitmae.models.vit`), in the same vocabulary with a depth axis: D, H, W volume (here D is
the volume's depth, not the width), d, h, w = D//p, H//p, W//p, L = d*h*w, each token p**3*C
voxels. Patches are in raster order over (d, h, w), voxels (z, y, x, channel) inside one.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitmae.errors import ConfigError
from vitmae.variants import check_grid


def patchify3d(vols: torch.Tensor, p: int) -> torch.Tensor:
    """vols: (B, C, D, H, W) -> (B, L, p**3*C), patches raster order, voxels (z, y, x, C)."""
    B, C, D, H, W = vols.shape
    d, h, w = D // p, H // p, W // p
    x = vols.reshape(B, C, d, p, h, p, w, p)  # (B, C, d, p, h, p, w, p)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, d, h, w, p, p, p, C)
    return x.reshape(B, d * h * w, p ** 3 * C)  # (B, L, p**3*C)


def unpatchify3d(x: torch.Tensor, p: int, C: int, dhw: tuple[int, int, int]) -> torch.Tensor:
    """x: (B, L, p**3*C) -> (B, C, D, H, W); the inverse of `patchify3d` for a (d, h, w) grid."""
    B = x.shape[0]
    d, h, w = dhw
    x = x.reshape(B, d, h, w, p, p, p, C)  # (B, d, h, w, p, p, p, C)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, d, p, h, p, w, p)
    return x.reshape(B, C, d * p, h * p, w * p)  # (B, C, D, H, W)


class PatchEmbed3d(nn.Module):
    """(B, C, D, H, W) -> (B, L, Dm): a p x p x p convolution of stride p, as one matmul.

    As `vitmae.models.vit.PatchEmbed`: the weight keeps the Conv3d shape (Dm, C, p, p, p) and
    the forward embeds only the kept patches when `ids_keep` is given (MAE). Dm is the token
    width (`embed_dim`), named so here because D is the volume's depth.
    """

    def __init__(self, img_size: tuple[int, int, int], patch_size: int, in_chans: int,
                 embed_dim: int):
        super().__init__()
        size = tuple(int(s) for s in img_size)
        if len(size) != 3:
            raise ConfigError(f"a volume has three sizes (D, H, W), got {size}")
        check_grid(size, patch_size)
        self.img_size, self.patch_size = size, patch_size
        self.grid_size = tuple(s // patch_size for s in size)  # (d, h, w)
        self.num_patches = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, D, H, W), ids_keep: (B, L_keep) or None -> (B, L_keep, Dm) or (B, L, Dm)."""
        if tuple(x.shape[-3:]) != self.img_size:
            raise ValueError(f"expected volumes of {self.img_size}, got {tuple(x.shape[-3:])}")
        B, C = x.shape[:2]
        (d, h, w), p = self.grid_size, self.patch_size
        x = x.reshape(B, C, d, p, h, p, w, p)  # (B, C, d, p, h, p, w, p)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(B, d * h * w, C * p ** 3)  # conv order
        if ids_keep is not None:
            x = x.take_along_dim(ids_keep.unsqueeze(-1), dim=1)  # (B, L_keep, C*p**3)
        return F.linear(x, self.proj.weight.flatten(1), self.proj.bias)  # (B, L_keep, Dm)

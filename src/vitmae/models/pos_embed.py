"""Fixed 2-D and 3-D sin-cos position embeddings and their resampling to a new grid.

Follows MAE (`util/pos_embed.py` in facebookresearch/mae): half of the channels encode the
row, half the column, each as sin/cos of the coordinate at geometric frequencies. The 3-D
table of volumes splits the channels in three the same way: column, row, then depth.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """pos: (M,) -> (M, dim): [sin(pos * w_k), cos(pos * w_k)], w_k = 1 / 10000^(2k/dim)."""
    assert dim % 2 == 0, f"sin-cos embedding needs an even dim, got {dim}"
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))  # (dim/2,)
    out = pos.double()[:, None] * omega[None, :]  # (M, dim/2)
    return torch.cat([out.sin(), out.cos()], dim=1).float()  # (M, dim)


def sincos_2d(dim: int, h: int, w: int) -> torch.Tensor:
    """-> (h*w, dim) for a row-major grid of h x w patches."""
    assert dim % 4 == 0, f"2-D sin-cos embedding needs dim divisible by 4, got {dim}"
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")  # (h, w) each
    # MAE uses the column coordinate for the first half of the channels (grid[0] = w).
    emb_w = sincos_1d(dim // 2, cols.reshape(-1))  # (L, dim/2)
    emb_h = sincos_1d(dim // 2, rows.reshape(-1))  # (L, dim/2)
    return torch.cat([emb_w, emb_h], dim=1)  # (L, dim)


def sincos_3d(dim: int, d: int, h: int, w: int) -> torch.Tensor:
    """-> (d*h*w, dim) for a raster-order grid of d x h x w patches: a third of the channels
    per axis, in MAE's 2-D order (column, row) and then the depth."""
    assert dim % 6 == 0, f"3-D sin-cos embedding needs dim divisible by 6, got {dim}"
    zs, ys, xs = torch.meshgrid(torch.arange(d), torch.arange(h), torch.arange(w),
                                indexing="ij")  # (d, h, w) each
    parts = [sincos_1d(dim // 3, c.reshape(-1)) for c in (xs, ys, zs)]  # 3 x (L, dim/3)
    return torch.cat(parts, dim=1)  # (L, dim)


def sincos_grid(dim: int, grid: tuple[int, ...]) -> torch.Tensor:
    """-> (L, dim): the 2-D table for a (h, w) grid, the 3-D one for a (d, h, w) grid."""
    return sincos_3d(dim, *grid) if len(grid) == 3 else sincos_2d(dim, *grid)


def resample_pos_embed(pos: torch.Tensor, new_hw: tuple[int, int],
                       num_prefix: int = 1) -> torch.Tensor:
    """Bicubic resampling of a learned or fixed grid embedding to another grid size.

    pos: (1, num_prefix + h*w, D) -> (1, num_prefix + h'*w', D); the grid must be square.
    """
    prefix, grid = pos[:, :num_prefix], pos[:, num_prefix:]  # (1, P, D), (1, L, D)
    old = int(math.isqrt(grid.shape[1]))
    assert old * old == grid.shape[1], f"position grid of {grid.shape[1]} tokens is not square"
    if (old, old) == tuple(new_hw):
        return pos
    D = grid.shape[-1]
    grid = grid.reshape(1, old, old, D).permute(0, 3, 1, 2)  # (1, D, h, w)
    grid = F.interpolate(grid.float(), size=new_hw, mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_hw[0] * new_hw[1], D)  # (1, L', D)
    return torch.cat([prefix, grid.to(pos.dtype)], dim=1)

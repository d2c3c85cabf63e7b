"""Axial 2-D rotary position embedding (RoPE) for ViT attention (Heo et al. 2024, RoPE-Axial).

Half of each head's channels rotate with the patch's column, half with its row, at
frequencies 1 / base^(k/n), k < n = head_dim / 4, in the rotate-half layout (GPT-NeoX). The
query-key product then depends on the two patches' offset, not on where they are: the same
attention pattern works for a digit anywhere on the canvas. It is added to the fixed sin-cos
position embedding, not in place of it. The class token (row 0) is not rotated. In MAE the
encoder rotates its kept patches with their own positions (`ids_keep`).
Shapes: L patches (row-major), hd head width, B batch, nh heads, N tokens.
"""

from __future__ import annotations

import torch

from vitmae.errors import ConfigError


def axial_rope(head_dim: int, h: int, w: int, base: float = 100.0) -> torch.Tensor:
    """-> (2, 1+L, hd): cos and sin of the rotation angles, row 0 (class token) angle 0."""
    if head_dim % 4:
        raise ConfigError(f"model.rope: the head width ({head_dim}) must be divisible by 4")
    n = head_dim // 4
    freqs = 1.0 / base ** (torch.arange(n, dtype=torch.float64) / n)  # (n,)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")  # (h, w) each
    angles = torch.cat([cols.reshape(-1, 1) * freqs, rows.reshape(-1, 1) * freqs], 1)  # (L, 2n)
    angles = torch.cat([angles.new_zeros(1, 2 * n), angles]).repeat(1, 2)  # (1+L, hd)
    return torch.stack([angles.cos(), angles.sin()]).float()  # (2, 1+L, hd)


def select(table: torch.Tensor, ids_keep: torch.Tensor | None) -> torch.Tensor:
    """(2, 1+L, hd) -> (2, B or 1, 1, 1+L_keep, hd): the class token's row, then the kept
    patches' rows (all patches when ids_keep is None), broadcastable over heads."""
    if ids_keep is None:
        return table[:, None, None]  # (2, 1, 1, 1+L, hd)
    idx = torch.cat([ids_keep.new_zeros(len(ids_keep), 1), ids_keep + 1], dim=1)  # (B, 1+Lk)
    return table[:, idx].unsqueeze(2)  # (2, B, 1, 1+L_keep, hd)


def rotate(x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """x (B, nh, N, hd) rotated by rope (2, B or 1, 1, N, hd)."""
    a, b = x.chunk(2, dim=-1)  # (B, nh, N, hd/2) each
    return x * rope[0] + torch.cat([-b, a], dim=-1) * rope[1]

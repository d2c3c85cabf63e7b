"""The transformer block of the ViT encoder and the MAE decoder, and its parts (timm's
`layers`): pre-norm attention and MLP with stochastic depth, MAE's initialisation.

Parameter names follow timm's `Block` (`norm1`, `attn.qkv`, `attn.proj`, `norm2`,
`mlp.fc1`, `mlp.fc2`). Shapes: B batch, N tokens, D width, nh heads, hd = D // nh.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitmae.errors import ConfigError
from vitmae.models.rope import rotate


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample (Huang et al. 2016)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, N, D) -> (B, N, D); the draws come from `generator` (None: torch's default)."""
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1))  # (B, 1, 1)
        keep.bernoulli_(1 - self.p, generator=generator)
        return x * keep.div_(1 - self.p)  # scale the (B, 1, 1) mask, not the activations


def split_heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, ...]:
    """The fused projection's output qkv (B, N, 3D) -> q, k, v, each (B, nh, N, hd): timm's
    layout of the qkv weight (all heads' q, then k, then v). Split on the qkv axis before
    moving heads forward: the backward then stacks the three gradients straight into the
    (B, N, 3, nh, hd) layout (no extra copy)."""
    B, N, D3 = qkv.shape
    qkv = qkv.reshape(B, N, 3, num_heads, D3 // (3 * num_heads))  # (B, N, 3, nh, hd)
    return tuple(t.transpose(1, 2) for t in qkv.unbind(2))  # 3 x (B, nh, N, hd)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection and SDPA; queries and keys are
    rotated when a RoPE table is given (`vitmae.models.rope`)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"{num_heads} heads do not divide the width {dim}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D), rope None or (2, B or 1, 1, N, hd) -> (B, N, D)."""
        B, N, D = x.shape
        q, k, v = split_heads(self.qkv(x), self.num_heads)  # 3 x (B, nh, N, hd)
        if rope is not None:
            q, k = rotate(q, rope), rotate(k, rope)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, nh, N, hd)
        return self.proj(x.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 qkv_bias: bool = True, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, N, D) -> (B, N, D); `generator` draws the drop-path masks."""
        x = x + self.drop_path(self.attn(self.norm1(x), rope), generator)
        return x + self.drop_path(self.mlp(self.norm2(x)), generator)


def init_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

"""onnxruntime's fused attention node for the ONNX export: `ort_attention(module)`.

Traced as it is, a ViT block's attention becomes a dozen nodes: the qkv MatMul, a Split, head
Transposes, two MatMuls around a Softmax and a Transpose back. Inside `ort_attention`, each
`vitmae.models.blocks.Attention` called without RoPE is exported instead as one
`com.microsoft.Attention` node (the contrib operator onnxruntime fuses BERT-style models
into): input (B, N, D), the qkv weight as (D, 3D) with q, k, v side by side, the qkv bias
(3D,), `num_heads`; softmax(q k^T / sqrt(hd)) v per head, the heads concatenated -> (B, N, D),
then the block's `proj` as before. Its CPU kernel works on the heads in place, and
`quantize_dynamic` turns it into `QAttention` (8-bit qkv weights). The file then runs on
onnxruntime only; `portable` exports keep the standard operators. Attention with RoPE keeps
the traced path (the fused node has no rotary input for this layout).

`ort_attention(module, gemm=True)` also runs the blocks' other linear layers (`proj`, the
MLP's `fc1` and `fc2`) on the tokens flattened to rows, (B, N, D) -> (B*N, D): traced so, a
linear layer is one `Gemm` node with its bias inside the product, where on (B, N, D) it is a
MatMul and an Add over the whole output (onnxruntime fuses that pair into Gemm only for 2-D
inputs).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from vitmae.models.blocks import Attention, Mlp, split_heads

DOMAIN = "com.microsoft"


class _FusedAttention(torch.autograd.Function):
    """The attention of `Attention.forward` before `proj`, exported as one node."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                num_heads: int) -> torch.Tensor:
        """x (B, N, D), weight (D, 3D), bias (3D,) -> (B, N, D); traced for shapes only."""
        B, N, D = x.shape
        q, k, v = split_heads(x @ weight + bias, num_heads)  # 3 x (B, nh, N, hd)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, N, hd)
        return out.transpose(1, 2).reshape(B, N, D)  # (B, N, D)

    @staticmethod
    def symbolic(g, x, weight, bias, num_heads: int):
        out = g.op(f"{DOMAIN}::Attention", x, weight, bias, num_heads_i=num_heads)
        out.setType(x.type())  # (B, N, D) as its input: the exporter's shape inference
        return out


def rows(linear: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """linear(x) on x (..., D) flattened to rows (M, D): exported as one Gemm (bias inside the
    product) instead of a MatMul and a separate Add over the whole output."""
    return linear(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], linear.out_features)


def _fused_forward(attn: Attention, traced, gemm: bool, x: torch.Tensor,
                   rope: torch.Tensor | None = None) -> torch.Tensor:
    """Attention.forward with the fused node; with RoPE, the traced original."""
    if rope is not None:
        return traced(x, rope)
    D = x.shape[-1]
    bias = attn.qkv.bias if attn.qkv.bias is not None else x.new_zeros(3 * D)
    out = _FusedAttention.apply(x, attn.qkv.weight.t(), bias, attn.num_heads)  # (B, N, D)
    return rows(attn.proj, out) if gemm else attn.proj(out)


def _mlp_forward(mlp: Mlp, x: torch.Tensor) -> torch.Tensor:
    """Mlp.forward on rows: x (B, N, D) -> (B*N, D) -> fc1, GELU, fc2 -> (B, N, D)."""
    return rows(mlp.fc2, mlp.act(rows(mlp.fc1, x)))


@contextmanager
def ort_attention(module: torch.nn.Module, gemm: bool = False) -> Iterator[int]:
    """Within the block, every Attention of `module` exports as one fused node -> how many
    modules were switched; with `gemm`, the blocks' linear layers run on rows (one Gemm
    each: for fp32 files, as onnxruntime's dynamic int8 quantises MatMul, not Gemm). Their
    own forwards are back afterwards."""
    switched = [m for m in module.modules() if isinstance(m, Attention)]
    for m in switched:
        traced = m.forward
        m.forward = (lambda x, rope=None, m=m, traced=traced:
                     _fused_forward(m, traced, gemm, x, rope))
    mlps = [m for m in module.modules() if isinstance(m, Mlp)] if gemm else []
    for m in mlps:
        m.forward = lambda x, m=m: _mlp_forward(m, x)
    try:
        yield len(switched)
    finally:
        for m in [*switched, *mlps]:
            del m.forward  # the instance attribute; the class's forward shows again

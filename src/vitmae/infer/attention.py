"""Where a ViT looks: attention weights recomputed beside the SDPA path, and two maps of them.

The encoder's attention runs through `F.scaled_dot_product_attention`, which never forms the
weights (HuggingFace's `output_attentions` comes back empty under SDPA for that reason).
`attention_weights` reruns the encoder and, at each block, recomputes q and k from the
block's own qkv projection on the block's input (after `norm1`, with RoPE where the model has
it) and forms softmax(q k^T / sqrt(hd)); the training forward is not touched.
- `token_attention`: the last block's attention of the class token to each patch, per head
  (`cls`; without a class token, the mean over the patch queries, which is what average
  pooling reads);
- `rollout`: attention rollout (Abnar & Zuidema 2020): per block the head-mean attention plus
  the identity of the residual connection, rows renormalised, multiplied through the blocks;
  the same query row of the product, over the patches.
Shapes: B batch, nh heads, hd head width, N = P + L tokens (P prefix tokens), h, w patch grid.
"""

from __future__ import annotations

import torch

from vitmae.models.blocks import Attention, split_heads
from vitmae.models.rope import rotate
from vitmae.models.vit import VisionTransformer


def block_attention(attn: Attention, x: torch.Tensor,
                    rope: torch.Tensor | None = None) -> torch.Tensor:
    """x (B, N, D), the block's normalised input -> (B, nh, N, N) attention weights."""
    q, k, _ = split_heads(attn.qkv(x), attn.num_heads)  # (B, nh, N, hd) each
    hd = q.shape[-1]
    if rope is not None:
        q, k = rotate(q, rope), rotate(k, rope)
    return (q @ k.transpose(-2, -1) * hd ** -0.5).softmax(dim=-1)  # (B, nh, N, N)


@torch.inference_mode()
def attention_weights(encoder: VisionTransformer, x: torch.Tensor) -> list[torch.Tensor]:
    """x (B, C, H, W) -> one (B, nh, N, N) attention tensor per block, in order."""
    rope = encoder.rope()
    tokens = encoder.embed(x)  # (B, N, D)
    out = []
    for block in encoder.blocks:
        out.append(block_attention(block.attn, block.norm1(tokens), rope))
        tokens = block(tokens, rope)
    return out


def _query(attn: torch.Tensor, P: int) -> torch.Tensor:
    """(..., N, N) -> (..., N): the class token's row, or the mean of the patch rows (P=0)."""
    return attn[..., 0, :] if P else attn[..., P:, :].mean(dim=-2)


def token_attention(encoder: VisionTransformer, weights: list[torch.Tensor]) -> torch.Tensor:
    """The last block's weights -> (B, nh, h, w): the pooled query's attention to each patch."""
    P, (h, w) = encoder.num_prefix_tokens, encoder.patch_embed.grid_size
    row = _query(weights[-1], P)[..., P:]  # (B, nh, L)
    return row.reshape(*row.shape[:2], h, w)  # (B, nh, h, w)


def rollout(encoder: VisionTransformer, weights: list[torch.Tensor]) -> torch.Tensor:
    """All blocks' weights -> (B, h, w): attention rollout of the pooled query to each patch."""
    P, (h, w) = encoder.num_prefix_tokens, encoder.patch_embed.grid_size
    B, _, N, _ = weights[0].shape
    eye = torch.eye(N, dtype=weights[0].dtype)
    joint = eye.expand(B, N, N)  # (B, N, N)
    for attn in weights:
        a = 0.5 * attn.mean(dim=1) + 0.5 * eye  # (B, N, N): heads averaged, plus the residual
        a = a / a.sum(dim=-1, keepdim=True)
        joint = a @ joint  # (B, N, N): the blocks so far, the latest applied last
    return _query(joint, P)[..., P:].reshape(B, h, w)  # (B, L) -> (B, h, w)

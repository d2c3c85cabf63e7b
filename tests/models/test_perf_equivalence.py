"""The optimised MAE equals the plain computation it replaced.

The model embeds only the kept patches (one matmul on their pixels), builds the decoder input
with one row lookup, splits qkv without an extra copy, and normalises targets with one fused
layer_norm. The reference below is the textbook MAE (facebookresearch/mae `models_mae.py`):
a stride-p convolution over every patch, a gather of D-wide tokens, cat + gather + cat in the
decoder, attention written out as softmax(q k^T / sqrt(hd)) v, and the explicit norm-pix
target. Both are trained side by side from the same weights on the same masks; their losses,
gradients and weights must agree.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from vitmae.models.blocks import Block
from vitmae.models.mae import MaskedAutoencoder, patchify, random_masking


def plain_block(blk: Block, x: torch.Tensor) -> torch.Tensor:
    """x: (B, N, D) -> (B, N, D), pre-norm block with attention written out."""
    B, N, D = x.shape
    nh = blk.attn.num_heads
    qkv = blk.attn.qkv(blk.norm1(x)).reshape(B, N, 3, nh, D // nh)  # (B, N, 3, nh, hd)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, nh, N, hd)
    att = (q @ k.transpose(-2, -1) * (D // nh) ** -0.5).softmax(dim=-1)  # (B, nh, N, N)
    x = x + blk.attn.proj((att @ v).transpose(1, 2).reshape(B, N, D))  # (B, N, D)
    return x + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(x))))


def plain_mae_loss(model: MaskedAutoencoder, imgs: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """The MAE loss of `imgs` computed the unoptimised way, with the model's parameters."""
    enc = model.encoder
    B, p, D = imgs.shape[0], enc.patch_size, enc.embed_dim
    L = enc.patch_embed.num_patches
    ids_keep, mask, ids_restore = random_masking(B, L, model.mask_ratio, generator=generator)
    proj = enc.patch_embed.proj
    x = F.conv2d(imgs, proj.weight, proj.bias, stride=p).flatten(2).transpose(1, 2)  # (B, L, D)
    x = x + enc.pos_embed[:, 1:]
    x = x.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, D))  # (B, L_keep, D)
    cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(B, -1, -1)  # (B, 1, D)
    x = torch.cat([cls, x], dim=1)  # (B, 1+L_keep, D)
    for blk in enc.blocks:
        x = plain_block(blk, x)
    x = model.decoder_embed(enc.norm(x))  # (B, 1+L_keep, Dd)
    Dd = x.shape[-1]
    masks = model.mask_token.expand(B, L + 1 - x.shape[1], -1)  # (B, L-L_keep, Dd)
    patches = torch.cat([x[:, 1:], masks], dim=1)  # (B, L, Dd) shuffled order
    patches = patches.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, Dd))  # patch order
    x = torch.cat([x[:, :1], patches], dim=1) + model.decoder_pos_embed  # (B, 1+L, Dd)
    for blk in model.decoder_blocks:
        x = plain_block(blk, x)
    pred = model.decoder_pred(model.decoder_norm(x))[:, 1:]  # (B, L, p*p*C)
    target = patchify(imgs, p)  # (B, L, p*p*C)
    if model.norm_pix_loss:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, L)
    return (per_patch * mask).sum() / mask.sum()


@pytest.mark.parametrize("norm_pix_loss", [True, False])
@pytest.mark.parametrize("in_chans, img_size", [(3, 16), (1, (12, 16))])
def test_optimised_mae_trains_like_the_plain_one(micro_mae, norm_pix_loss, in_chans, img_size):
    fast = micro_mae(img_size=img_size, in_chans=in_chans, norm_pix_loss=norm_pix_loss,
                     decoder_depth=2).train()
    plain = copy.deepcopy(fast)
    opt_fast = torch.optim.AdamW(fast.parameters(), lr=1e-3)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=1e-3)
    H, W = fast.encoder.patch_embed.img_size
    imgs = torch.randn(6, in_chans, H, W, generator=torch.Generator().manual_seed(0))
    losses_fast, losses_plain = [], []
    for step in range(5):
        loss_fast, _, _ = fast(imgs, generator=torch.Generator().manual_seed(step))
        loss_plain = plain_mae_loss(plain, imgs, torch.Generator().manual_seed(step))
        loss_fast.backward()
        loss_plain.backward()
        if step == 0:  # same weights: the gradients agree to rounding
            for (name, a), b in zip(fast.named_parameters(), plain.parameters(), strict=True):
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7,
                                           msg=lambda m, name=name: f"{name}: {m}")
        for opt in (opt_fast, opt_plain):
            opt.step()
            opt.zero_grad(set_to_none=True)
        losses_fast.append(loss_fast.item())
        losses_plain.append(loss_plain.item())
    # Later steps: Adam turns the rounding noise of gradients that are zero in exact
    # arithmetic (the key bias: softmax ignores a constant per row) into lr-sized steps that
    # change nothing downstream, so the losses are compared, not every weight.
    assert losses_fast == pytest.approx(losses_plain, rel=1e-4)
    assert losses_fast[-1] < losses_fast[0]


def test_patch_matmul_equals_the_strided_convolution(micro_vit):
    model = micro_vit(img_size=(12, 20), in_chans=3)
    x = torch.randn(2, 3, 12, 20)
    proj = model.patch_embed.proj
    conv = F.conv2d(x, proj.weight, proj.bias, stride=4).flatten(2).transpose(1, 2)  # (B, L, D)
    with torch.no_grad():
        torch.testing.assert_close(model.patch_embed(x), conv, rtol=1e-5, atol=1e-6)
        ids_keep = torch.tensor([[0, 7, 3], [14, 1, 2]])  # (B, L_keep)
        torch.testing.assert_close(model.patch_embed(x, ids_keep),
                                   conv.gather(1, ids_keep[..., None].expand(-1, -1, 32)))

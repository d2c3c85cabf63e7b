"""The architecture of a ViT state dict in the common (timm / MAE) layout, read from its
tensors' names and shapes: width, depth, patch, channels, MLP ratio, qkv bias, class token,
fc_norm, the position grid (hence the native image size) and the head's class count.

A hybrid ViT (`model.stem=conv`) is recognised by its `patch_embed.stem.N.conv` stages: its
patch size is 2 ** (number of stages), its channels those of the first stage's convolution.

The number of heads leaves no trace in the weights: a source that knows it (a HuggingFace
config, a vitmae run) passes it in; otherwise the standard variants' head width of 64 is
assumed (80 for ViT-H/14), and the caller says so.
"""

from __future__ import annotations

import re

import torch

from vitmae.errors import UserError

BLOCK = re.compile(r"^blocks\.(\d+)\.")
STEM = re.compile(r"^patch_embed\.stem\.(\d+)\.conv\.weight$")


class UnknownLayout(UserError, ValueError):
    """A state dict that is not a ViT in the common layout."""


def infer_arch(state: dict[str, torch.Tensor]) -> dict:
    """-> dict(patch_size, embed_dim, depth, in_chans, mlp_ratio, qkv_bias, class_token,
    fc_norm, img_size, num_classes, num_heads (None when unknown), rope, stem ('patch' or
    'conv'), stem_width (the conv stem's first width; None for 'patch'), spatial_dims (3 for
    a ViT of volumes))."""
    proj = state.get("patch_embed.proj.weight")
    if proj is None or proj.ndim not in (4, 5):
        raise UnknownLayout("no 'patch_embed.proj.weight' of shape (D, C, p, p) or, for "
                            "volumes, (D, C, p, p, p)")
    dims = proj.ndim - 2  # 3: a ViT of volumes, cubic patches
    D, C, p, p2 = proj.shape[:4]
    if len(set(proj.shape[2:])) != 1:
        raise UnknownLayout(f"patch_embed.proj.weight: non-square patch {p}x{p2}")
    stages = {int(m.group(1)) for k in state if (m := STEM.match(k))}
    stem_width = None
    if stages:
        if stages != set(range(len(stages))) or p != 1:
            raise UnknownLayout(f"a convolutional stem needs stages patch_embed.stem.0 .. N and a "
                                f"1x1 patch_embed.proj; found stages {sorted(stages)} and a "
                                f"{p}x{p} projection")
        first = state["patch_embed.stem.0.conv.weight"]  # (c_0, C, 3, 3)
        stem_width, C, p = int(first.shape[0]), first.shape[1], 2 ** len(stages)
    blocks = {int(m.group(1)) for k in state if (m := BLOCK.match(k))}
    if not blocks or blocks != set(range(max(blocks) + 1)):
        raise UnknownLayout(f"expected blocks.0 .. blocks.N, found indices {sorted(blocks)}")
    class_token = "cls_token" in state
    pos = state.get("pos_embed")
    if pos is None:
        raise UnknownLayout("no 'pos_embed'")
    grid = pos.shape[1] - int(class_token)
    side = round(grid ** (1 / dims))
    if side ** dims != grid:
        raise UnknownLayout(f"pos_embed: {pos.shape[1]} positions are not a square grid (a "
                            f"cube for volumes) {'plus a class token' if class_token else ''} "
                            f"(a position table without the prefix tokens, timm's "
                            f"no_embed_class, is not supported)")
    head = state.get("head.weight")
    return dict(
        patch_size=int(p), embed_dim=int(D), depth=len(blocks), in_chans=int(C),
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / D,
        qkv_bias="blocks.0.attn.qkv.bias" in state, class_token=class_token,
        fc_norm="fc_norm.weight" in state, img_size=side * int(p),
        num_classes=0 if head is None else int(head.shape[0]), num_heads=None,
        rope="rope_table" in state, stem="conv" if stages else "patch", stem_width=stem_width,
        spatial_dims=dims)


def guess_num_heads(embed_dim: int, patch_size: int) -> int:
    """The standard variants' head count for a width: head width 64 (80 for ViT-H/14)."""
    if embed_dim == 1280 and patch_size == 14:
        return 16
    return max(1, embed_dim // 64)

"""Semantic segmentation model: a ViT encoder plus a decode head (Segmenter, SETR).

As rstrudel/segmenter: the encoder's prefix (class) token is dropped, the patch tokens are
decoded on the (h, w) grid and upsampled, so the logits are (B, K, H, W) at input resolution.
The encoder has no classification head (num_classes=0), so a pretrained MAE encoder loads
with no missing key at all.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vitmae.models.seg_heads import build_head
from vitmae.models.vit import VisionTransformer, build_vit


class Segmenter(nn.Module):
    def __init__(self, encoder: VisionTransformer, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, K, H, W) logits."""
        feats = self.encoder.forward_intermediates(x, self.head.indices)  # each (B, L, D)
        return self.head(feats, self.encoder.patch_embed.grid_size, x)  # (B, K, H, W)


def build_segmenter(model_cfg, img_size, in_chans: int, num_classes: int) -> Segmenter:
    """Encoder from model_cfg (arch + overrides), head from model_cfg.seg_head."""
    encoder = build_vit(model_cfg, img_size, in_chans, num_classes=0)
    head = build_head(model_cfg.seg_head, encoder.embed_dim, num_classes, encoder.depth,
                      encoder.patch_size, in_chans)
    return Segmenter(encoder, head)

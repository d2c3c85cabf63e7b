"""Semantic segmentation model: a ViT encoder plus a decode head (Segmenter, SETR).

As rstrudel/segmenter: the encoder's prefix (class) token is dropped, the patch tokens are
decoded on the (h, w) grid and upsampled, so the logits are (B, K, H, W) at input resolution.
The encoder has no classification head (num_classes=0), so a pretrained MAE encoder loads
with no missing key at all.
With `model.seg_aux` > 0 an auxiliary linear head (Segmenter's, on the normalised tokens of an
intermediate block: the head's second-to-last level) gives the encoder a direct per-patch
loss during training, as mmsegmentation's `auxiliary_head` (SETR, UperNet: weight 0.4). In
training mode the model then returns (logits, aux logits); in eval mode the logits only.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vitmae.models.seg_heads import LinearHead, build_head
from vitmae.models.vit import VisionTransformer, build_vit


class Segmenter(nn.Module):
    def __init__(self, encoder: VisionTransformer, head: nn.Module,
                 aux_head: LinearHead | None = None):
        super().__init__()
        self.encoder, self.head, self.aux_head = encoder, head, aux_head
        if aux_head is not None:
            self.aux_norm = nn.LayerNorm(encoder.embed_dim, eps=1e-6)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, H, W) -> (B, K, H, W) logits; training with an aux head: (logits, aux).
        `generator` draws the encoder's drop-path masks."""
        aux = self.aux_head is not None and self.training
        levels = list(self.head.indices)
        feats = self.encoder.forward_intermediates(
            x, levels + self.aux_head.indices if aux else levels, generator)  # each (B, L, D)
        hw = self.encoder.patch_embed.grid_size
        logits = self.head(feats[: len(levels)], hw, x)  # (B, K, H, W)
        if not aux:
            return logits
        return logits, self.aux_head([self.aux_norm(feats[-1])], hw, x)  # 2 x (B, K, H, W)


def build_segmenter(model_cfg, img_size, in_chans: int, num_classes: int) -> Segmenter:
    """Encoder from model_cfg (arch + overrides), head from model_cfg.seg_head."""
    encoder = build_vit(model_cfg, img_size, in_chans, num_classes=0)
    head = build_head(model_cfg.seg_head, encoder.embed_dim, num_classes, encoder.depth,
                      encoder.patch_size, in_chans)
    aux = None
    if model_cfg.seg_aux > 0:  # on the head's second-to-last level, else the middle block
        level = head.indices[-2] if len(head.indices) > 1 else encoder.depth // 2 - 1
        aux = LinearHead(encoder.embed_dim, num_classes, level)
    return Segmenter(encoder, head, aux)

"""Semantic segmentation model: a ViT encoder plus a decode head (Segmenter, SETR).

As rstrudel/segmenter: the encoder's prefix (class) token is dropped, the patch tokens are
decoded on the (h, w) grid and upsampled, so the logits are (B, K, H, W) at input resolution.
The encoder has no classification head (num_classes=0), so a pretrained MAE encoder loads
with no missing key at all.
The 'unet' head also reads the convolutional stem's maps (a hybrid encoder, `model.stem=conv`).
With `model.seg_aux` > 0 an auxiliary linear head (Segmenter's, on the normalised tokens of an
intermediate block: the head's second-to-last level) gives the encoder a direct per-patch
loss during training, as mmsegmentation's `auxiliary_head` (SETR, UperNet: weight 0.4). In
training mode the model then returns (logits, aux logits); in eval mode the logits only.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vitmae.errors import ConfigError
from vitmae.models.seg_heads import LinearHead, PUPHead
from vitmae.models.unet_head import UNetHead
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
        wanted = levels + self.aux_head.indices if aux else levels
        hw = self.encoder.patch_embed.grid_size
        if getattr(self.head, "stem_skips", False):  # U-Net: the conv stem's maps as skips
            feats, maps = self.encoder.block_tokens_and_stem_maps(
                x, wanted, generator)  # [(B, L, D)], the stem's maps
            logits = self.head(feats[: len(levels)], hw, x, maps)  # (B, K, H, W)
        else:
            feats = self.encoder.block_tokens(x, wanted, generator)  # each (B, L, D)
            logits = self.head(feats[: len(levels)], hw, x)  # (B, K, H, W)
        if not aux:
            return logits
        return logits, self.aux_head([self.aux_norm(feats[-1])], hw, x)  # 2 x (B, K, H, W)


def build_head(name: str, encoder: VisionTransformer, num_classes: int) -> nn.Module:
    """'linear' (Segmenter), 'pup' (SETR-PUP over SETR-MLA levels, with image skips) or
    'unet' (TransUNet-style skips from the encoder's convolutional stem)."""
    D, depth, C = encoder.embed_dim, encoder.depth, encoder.in_chans
    if name == "linear":
        return LinearHead(D, num_classes, depth - 1)
    if name == "pup":
        return PUPHead(D, num_classes, depth, encoder.patch_size, C)
    if name == "unet":
        widths = getattr(encoder.patch_embed, "widths", None)
        if widths is None:
            raise ConfigError("model.seg_head='unet' takes its skips from a convolutional stem: "
                             "needs model.stem=conv")
        return UNetHead(D, num_classes, depth, widths, C)
    raise ConfigError(f"model.seg_head: expected 'linear', 'pup' or 'unet', got {name!r}")


def build_segmenter(model_cfg, img_size, in_chans: int, num_classes: int) -> Segmenter:
    """Encoder from model_cfg (arch + overrides), head from model_cfg.seg_head."""
    encoder = build_vit(model_cfg, img_size, in_chans, num_classes=0)
    head = build_head(model_cfg.seg_head, encoder, num_classes)
    aux = None
    if model_cfg.seg_aux > 0:  # on the head's second-to-last level, else the middle block
        level = head.indices[-2] if len(head.indices) > 1 else encoder.depth // 2 - 1
        aux = LinearHead(encoder.embed_dim, num_classes, level)
    return Segmenter(encoder, head, aux)

"""U-Net-style segmentation head of a hybrid ViT: the transformer's tokens decoded with skips
from the convolutional stem (TransUNet, Chen et al. 2021; U-Net, Ronneberger et al. 2015).

The last block's tokens go to a (B, c, h, w) grid (one linear map, then a 3x3 convolution on
the patch grid, where it is cheap and lets neighbouring patches agree on what an object is);
then each step doubles the resolution, concatenates the stem's map of that stride and mixes
them with a 3x3 convolution, from stride p/2 down to stride 2. The stride-p map needs no skip:
the tokens were made from it. A last step at full resolution concatenates a shallow
convolutional branch on the image itself, so that edges of 1-3 px strokes are placed from the
pixels, and a 1x1 convolution gives the class logits. The tokens know *what* is there, the
skips *where* its edges are.
Shapes: B batch, C channels, H, W image, p patch, h, w = H//p, W//p, L = h*w, D width, K classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitmae.models.seg_heads import conv_norm_act, tokens_to_grid


class UNetHead(nn.Module):
    """Tokens of the last block + the conv stem's maps + the image -> (B, K, H, W) logits."""

    stem_skips = True  # the Segmenter passes the stem's maps (`block_tokens_and_stem_maps`)

    def __init__(self, embed_dim: int, num_classes: int, depth: int, stem_widths: list[int],
                 in_chans: int, channels: int = 64, min_channels: int = 16,
                 pixel_channels: int = 8):
        super().__init__()
        self.indices = [depth - 1]
        self.fuse = nn.Linear(embed_dim, channels)  # a Linear on the tokens: one matmul
        self.fuse_act = nn.Sequential(nn.GroupNorm(min(8, channels), channels),
                                      nn.ReLU(inplace=True))
        self.context = conv_norm_act(channels, channels)
        skips = stem_widths[-2::-1]  # the stem's widths at strides p/2, ..., 2
        widths = [max(channels >> i, min_channels) for i in range(len(skips) + 2)]
        self.ups = nn.ModuleList(conv_norm_act(widths[i] + c, widths[i + 1])
                                 for i, c in enumerate(skips))
        self.pixels = conv_norm_act(in_chans, pixel_channels)  # full resolution, on the image
        self.full = conv_norm_act(widths[len(skips)] + pixel_channels, widths[-1])
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)
        # weights channels-last like their inputs (faster small CPU convolutions), so that their
        # gradients come out in the weights' own layout, which DDP's buckets expect (PUPHead)
        self.to(memory_format=torch.channels_last)

    def forward(self, feats: list[torch.Tensor], hw: tuple[int, int], imgs: torch.Tensor,
                maps: list[torch.Tensor]) -> torch.Tensor:
        """feats [(B, L, D)], imgs (B, C, H, W), maps: the stem's, (B, c_i, H/2^(i+1),
        W/2^(i+1)) for i = 0 .. log2(p)-1 -> (B, K, H, W) logits."""
        x = self.fuse_act(tokens_to_grid(self.fuse(feats[0]), hw))  # (B, c_0, h, w)
        x = self.context(x.contiguous(memory_format=torch.channels_last))  # (B, c_0, h, w)
        for up, skip in zip(self.ups, maps[-2::-1], strict=True):
            x = F.interpolate(x, scale_factor=2, mode="bilinear",
                              align_corners=False)  # (B, c_i, 2h', 2w'), the skip's size
            x = up(torch.cat([x, skip], dim=1).contiguous(
                memory_format=torch.channels_last))  # (B, c_i + c_skip, ..) -> (B, c_i+1, ..)
        x = F.interpolate(x, scale_factor=2, mode="bilinear",
                          align_corners=False)  # (B, c, H/2, W/2) -> (B, c, H, W)
        pixels = self.pixels(imgs.contiguous(memory_format=torch.channels_last))  # (B, 8, H, W)
        x = self.full(torch.cat([x, pixels], dim=1).contiguous(
            memory_format=torch.channels_last))  # (B, c + 8, H, W) -> (B, c, H, W)
        return self.classifier(x)  # (B, K, H, W)

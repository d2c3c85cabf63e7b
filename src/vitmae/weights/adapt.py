"""Fitting a patch projection to another patch size or channel count.

- Patch size: FlexiViT's pseudo-inverse resize (Beyer et al. 2023). A p x p patch x is seen
  at the new size as B x (bilinear resize, B: (p'^2, p^2)); the new weight w' keeps every
  token the same, <x, w> = <B x, w'>, in the least-squares sense: w' = pinv(B^T) w.
- Channels: a 3-channel projection applied to a grey image repeated three times equals the
  sum of its channel weights applied to the grey image, so 1-channel data sums them; the other
  way, a 1-channel weight is spread as its third over each of C channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitmae.errors import ConfigError


def resize_matrix(old: int, new: int) -> torch.Tensor:
    """B: (new*new, old*old), the bilinear resize of a flattened old x old patch."""
    eye = torch.eye(old * old, dtype=torch.float64).reshape(old * old, 1, old, old)
    out = F.interpolate(eye, size=(new, new), mode="bilinear", align_corners=False,
                        antialias=new < old)  # (old^2, 1, new, new): the image of each basis
    return out.reshape(old * old, new * new).T  # (new^2, old^2)


def resize_patch_weight(weight: torch.Tensor, new: int) -> torch.Tensor:
    """weight (D, C, p, p) -> (D, C, new, new), FlexiViT's pinv resize."""
    D, C, p, _ = weight.shape
    if p == new:
        return weight
    B = resize_matrix(p, new)  # (new^2, p^2)
    w = weight.double().reshape(D * C, p * p)  # (D*C, p^2)
    resized = w @ torch.linalg.pinv(B.T).T  # (D*C, new^2): each row w' = pinv(B^T) w
    return resized.reshape(D, C, new, new).to(weight.dtype)


def adapt_channels(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """weight (D, C, p, p) -> (D, in_chans, p, p): summed to 1 channel, or spread from 1."""
    C = weight.shape[1]
    if C == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)  # (D, 1, p, p)
    if C == 1:
        return weight.expand(-1, in_chans, -1, -1) / in_chans  # (D, in_chans, p, p)
    raise ConfigError(f"cannot map a {C}-channel patch projection to {in_chans} channels "
                      f"(only C -> 1 and 1 -> C)")

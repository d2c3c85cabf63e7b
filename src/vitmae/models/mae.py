"""Masked Autoencoder (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners").

Follows facebookresearch/mae `models_mae.py`: per-sample random masking, the encoder sees the
visible patches only, a light decoder fills in mask tokens and predicts the pixels of every
patch, and the loss is the MSE on the removed patches. Unlike the reference, `patchify`
handles any channel count and non-square images.

Shape vocabulary (used across the package):
    B batch, C channels, H, W image, p patch, h, w = H//p, W//p, L = h*w patches,
    L_keep kept patches, D encoder width, Dd decoder width, K classes.
Mask convention: `mask` is (B, L) with 1 = removed, 0 = kept; `ids_keep` / `ids_restore` are
patch indices 0..L-1 (the class token is the encoder's business).
Volumes (an encoder of 3-D img_size) are the same model over cubic patches: (B, C, D, H, W),
L = d*h*w, p**3*C voxels per patch (`vitmae.models.patch3d`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitmae.errors import ConfigError
from vitmae.models.blocks import Block, init_weights
from vitmae.models.masking import random_masking
from vitmae.models.patch3d import patchify3d
from vitmae.models.pos_embed import sincos_grid
from vitmae.models.vit import VisionTransformer, build_vit


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """imgs: (B, C, H, W) -> (B, L, p*p*C), patches row-major, pixels (row, col, channel)."""
    B, C, H, W = imgs.shape
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(B, h * w, p * p * C)  # (B, L, p*p*C)


def unpatchify(x: torch.Tensor, p: int, C: int, hw: tuple[int, int]) -> torch.Tensor:
    """x: (B, L, p*p*C) -> (B, C, H, W); the inverse of `patchify` for a (h, w) grid."""
    B = x.shape[0]
    h, w = hw
    x = x.reshape(B, h, w, p, p, C)  # (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, p)
    return x.reshape(B, C, h * p, w * p)  # (B, C, H, W)


def normalize_patches(target: torch.Tensor, eps: float = 1.0e-6) -> torch.Tensor:
    """MAE's norm_pix target per patch: (t - mean) / sqrt(var + eps), var unbiased.

    target: (B, L, n) -> (B, L, n). One fused layer_norm instead of five passes; layer_norm
    divides by the biased variance c * var, c = (n-1)/n, so the target is
    sqrt(c) * layer_norm(t, eps = c * eps), the sqrt(c) going in as the norm's weight.
    """
    n = target.shape[-1]
    c = (n - 1) / n
    scale = target.new_full((n,), c ** 0.5)  # (n,)
    return F.layer_norm(target, (n,), weight=scale, eps=c * eps)


class MaskedAutoencoder(nn.Module):
    """MAE = ViT encoder on visible patches + light transformer decoder over all patches."""

    def __init__(self, encoder: VisionTransformer, decoder_embed_dim: int = 512,
                 decoder_depth: int = 8, decoder_num_heads: int = 16,
                 mask_ratio: float = 0.75, norm_pix_loss: bool = False,
                 norm_eps: float = 1e-6, distill_weight: float = 0.0):
        super().__init__()
        if encoder.num_prefix_tokens != 1:
            raise ConfigError("MAE needs an encoder with a class token (model.class_token=true)")
        self.encoder = encoder
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        D, p, C = encoder.embed_dim, encoder.patch_size, encoder.in_chans
        self.grid_size = encoder.patch_embed.grid_size
        self.decoder_embed = nn.Linear(D, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        pos = torch.cat([torch.zeros(1, decoder_embed_dim),
                         sincos_grid(decoder_embed_dim, self.grid_size)])
        self.register_buffer("decoder_pos_embed", pos.unsqueeze(0))  # (1, 1+L, Dd)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_embed_dim, decoder_num_heads, norm_eps=norm_eps)
            for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=norm_eps)
        # p*p*C values per patch, p**3*C for volumes
        self.decoder_pred = nn.Linear(decoder_embed_dim, p ** len(self.grid_size) * C)
        for m in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            m.apply(init_weights)
        nn.init.normal_(self.mask_token, std=0.02)
        # Feature distillation (`forward(..., teacher_tokens=)`): a linear map of the encoder's
        # visible tokens onto a frozen teacher's. Named decoder_*: it is pretraining-only, like
        # the decoder, and dropped with it. Identity at the start, so that a teacher equal to
        # the starting encoder pulls only where masking changes the features.
        self.distill_weight = distill_weight
        if distill_weight > 0:
            self.decoder_distill = nn.Linear(D, D)
            nn.init.eye_(self.decoder_distill.weight)
            nn.init.zeros_(self.decoder_distill.bias)
        self.parts: dict[str, torch.Tensor] = {}  # the last forward's loss terms, for logging

    @property
    def patch_size(self) -> int:
        return self.encoder.patch_size

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent: (B, 1+L_keep, D), ids_restore: (B, L) -> (B, L, p*p*C) pixel predictions."""
        x = self.decoder_embed(latent)  # (B, 1+L_keep, Dd)
        B, n, Dd = x.shape  # n = 1 + L_keep
        L = ids_restore.shape[1]
        # One row lookup builds the whole sequence (instead of cat, gather, cat): the rows of
        # every sample's tokens, then the mask token as the last row.
        table = torch.cat([x.reshape(B * n, Dd), self.mask_token.reshape(1, Dd)])  # (B*n+1, Dd)
        first = torch.arange(B, device=x.device).unsqueeze(1) * n  # (B, 1) row of each cls
        rows = torch.where(ids_restore < n - 1, first + 1 + ids_restore, B * n)  # (B, L)
        rows = torch.cat([first, rows], dim=1)  # (B, 1+L): class token, then patch order
        x = table.index_select(0, rows.flatten()).view(B, 1 + L, Dd)  # (B, 1+L, Dd)
        x = x + self.decoder_pos_embed  # (B, 1+L, Dd)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # (B, L, p*p*C)

    def loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE on removed patches only. imgs (B, C, H, W), pred (B, L, p*p*C), mask (B, L)."""
        p = self.patch_size
        target = patchify(imgs, p) if imgs.ndim == 4 else patchify3d(imgs, p)  # (B, L, p*p*C)
        if self.norm_pix_loss:  # per-patch normalised pixels (paper, Table 1d)
            target = normalize_patches(target)
        per_patch = F.mse_loss(pred.float(), target, reduction="none").mean(dim=-1)  # (B, L)
        # mask_ratio 0 removes nothing: then every patch counts (a plain autoencoder), without
        # a host sync to find out.
        weight = mask + (mask.sum() == 0).to(mask.dtype)  # (B, L)
        return (per_patch * weight).sum() / weight.sum()

    def distill_loss(self, latent: torch.Tensor, teacher_tokens: torch.Tensor,
                     ids_keep: torch.Tensor) -> torch.Tensor:
        """MSE between the mapped encoder tokens and the teacher's at the same positions: the
        class token and the visible patches. Both sides are whitened by a LayerNorm without
        affine (Wei et al. 2022, feature distillation), so the loss depends neither on the
        features' scale nor on the final norm's affine weights: a student equal to the
        teacher starts at zero loss.

        latent (B, 1+L_keep, D), teacher_tokens (B, 1+L, D) of the whole image, ids_keep
        (B, L_keep) -> scalar.
        """
        D = latent.shape[-1]
        idx = ids_keep.unsqueeze(-1).expand(-1, -1, D)  # (B, L_keep, D)
        visible = torch.gather(teacher_tokens[:, 1:], 1, idx)  # (B, L_keep, D)
        target = torch.cat([teacher_tokens[:, :1], visible], dim=1)  # (B, 1+L_keep, D)
        target = F.layer_norm(target.float(), (D,))
        pred = self.decoder_distill(F.layer_norm(latent, (D,)))  # (B, 1+L_keep, D)
        return F.mse_loss(pred.float(), target)

    def forward(self, imgs: torch.Tensor, mask_ratio: float | None = None,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                teacher_tokens: torch.Tensor | None = None):
        """imgs: (B, C, H, W), noise None or (B, L) -> loss (scalar), pred (B, L, p*p*C),
        mask (B, L). The masking (and any drop-path) draws from `generator` (None: torch's
        default). With `teacher_tokens` (B, 1+L, D), a frozen teacher's features of the whole
        image, the loss adds distill_weight times `distill_loss`."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        B = imgs.shape[0]
        L = self.encoder.patch_embed.num_patches
        ids_keep, mask, ids_restore = random_masking(B, L, ratio, imgs.device, generator, noise)
        latent = self.encoder.forward_features(imgs, ids_keep, generator)  # (B, 1+L_keep, D)
        pred = self.forward_decoder(latent, ids_restore)  # (B, L, p*p*C)
        loss = self.loss(imgs, pred, mask)
        if teacher_tokens is None or not self.distill_weight:
            return loss, pred, mask
        distill = self.distill_loss(latent, teacher_tokens, ids_keep)
        self.parts = {"mae_loss": loss.detach(), "distill_loss": distill.detach()}
        return loss + self.distill_weight * distill, pred, mask


def build_mae(model_cfg, img_size, in_chans: int,
              distill_weight: float = 0.0) -> MaskedAutoencoder:
    """An MAE from a ModelConfig; the encoder has no head and no drop-path (as in MAE)."""
    encoder = build_vit(model_cfg, img_size, in_chans, num_classes=0, drop_path=0.0)
    return MaskedAutoencoder(
        encoder, decoder_embed_dim=model_cfg.decoder_embed_dim,
        decoder_depth=model_cfg.decoder_depth, decoder_num_heads=model_cfg.decoder_num_heads,
        mask_ratio=model_cfg.mask_ratio, norm_pix_loss=model_cfg.norm_pix_loss,
        norm_eps=model_cfg.norm_eps, distill_weight=distill_weight)

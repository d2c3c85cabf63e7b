"""ViT and MAE on volumes: cubic patches, the 3-D sin-cos table, masking, the loss, learning."""

from __future__ import annotations

import pytest
import torch

from vitmae.config import ModelConfig
from vitmae.errors import ConfigError
from vitmae.models.mae import build_mae, random_masking
from vitmae.models.patch3d import PatchEmbed3d, patchify3d, unpatchify3d
from vitmae.models.pos_embed import sincos_1d, sincos_2d, sincos_3d
from vitmae.models.vit import build_vit

# A micro 3-D model: the width split in three axes needs embed_dims divisible by 6.
MICRO3D = dict(arch="vit_micro_patch4", embed_dim=48, drop_path=0.0, decoder_embed_dim=24,
               decoder_depth=1, decoder_num_heads=2, spatial_dims=3)


def vit3d(img_size=8, num_classes: int = 2, seed: int = 0, **model):
    torch.manual_seed(seed)
    return build_vit(ModelConfig(**{**MICRO3D, **model}), img_size, 1, num_classes)


def mae3d(img_size=8, seed: int = 0, **model):
    torch.manual_seed(seed)
    return build_mae(ModelConfig(**{**MICRO3D, **model}), img_size, 1)


@pytest.mark.parametrize("C", [1, 2])
@pytest.mark.parametrize("DHW", [(8, 8, 8), (4, 8, 12)])
@pytest.mark.parametrize("p", [2, 4])
def test_unpatchify3d_inverts_patchify3d(C, DHW, p):
    vols = torch.randn(2, C, *DHW)
    x = patchify3d(vols, p)
    grid = tuple(s // p for s in DHW)
    assert x.shape == (2, grid[0] * grid[1] * grid[2], p ** 3 * C)
    assert torch.equal(unpatchify3d(x, p, C, grid), vols)


def test_patchify3d_order_matches_a_reference_loop():
    # Patches in raster order over (d, h, w); voxels (z, y, x) with channels last.
    p, C, D, H, W = 2, 2, 4, 2, 6
    vols = torch.arange(C * D * H * W, dtype=torch.float32).reshape(1, C, D, H, W)
    x = patchify3d(vols, p)
    h, w = H // p, W // p
    for l in range(x.shape[1]):
        k, rest = divmod(l, h * w)
        i, j = divmod(rest, w)
        ref = [vols[0, c, k * p + z, i * p + y, j * p + s].item()
               for z in range(p) for y in range(p) for s in range(p) for c in range(C)]
        assert x[0, l].tolist() == ref


def test_patch_embed3d_is_the_strided_conv3d():
    torch.manual_seed(0)
    emb = PatchEmbed3d((4, 8, 8), 4, 2, 12)
    vols = torch.randn(3, 2, 4, 8, 8)
    ref = emb.proj(vols).flatten(2).transpose(1, 2)  # (B, L, Dm) raster order
    torch.testing.assert_close(emb(vols), ref, atol=1e-5, rtol=1e-5)
    ids_keep = torch.tensor([[3, 0], [1, 2], [0, 1]])
    torch.testing.assert_close(emb(vols, ids_keep), ref.take_along_dim(ids_keep[..., None], 1),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="expected volumes"):
        emb(torch.randn(1, 2, 8, 8, 8))


def test_sincos_3d_table():
    dim, d, h, w = 24, 2, 3, 4
    table = sincos_3d(dim, d, h, w)
    assert table.shape == (d * h * w, dim)
    assert len({tuple(r) for r in table.round(decimals=5).tolist()}) == d * h * w  # distinct
    grid = table.reshape(d, h, w, dim)
    third = dim // 3
    for z in range(d):  # the 2-D table of each depth slice, then the depth's own channels
        torch.testing.assert_close(grid[z, ..., :2 * third].reshape(h * w, -1),
                                   sincos_2d(2 * third, h, w))
        torch.testing.assert_close(grid[z, ..., 2 * third:],
                                   sincos_1d(third, torch.tensor([z])).expand(h, w, third))
    with pytest.raises(AssertionError, match="divisible by 6"):
        sincos_3d(32, 2, 2, 2)


def test_3d_vit_shapes_and_refusals():
    model = vit3d(img_size=8)
    assert model.patch_embed.grid_size == (2, 2, 2) and model.pos_embed.shape == (1, 9, 48)
    assert model(torch.randn(2, 1, 8, 8, 8)).shape == (2, 2)
    with pytest.raises(ConfigError, match="no rope"):
        vit3d(rope=True)


def test_3d_conv_stem_shapes():
    # The hybrid's stem in 3-D: log2(p) stride-2 stages of 3x3x3 convolutions, one token per
    # p^3 voxels, the stage maps halving each side (what a volume's U-Net skips would be).
    model = vit3d(img_size=8, stem="conv", stem_width=4)
    stem = model.patch_embed
    assert stem.grid_size == (2, 2, 2) and model.pos_embed.shape == (1, 9, 48)
    vols = torch.randn(2, 1, 8, 8, 8)
    assert [tuple(m.shape) for m in stem.features(vols)] == [(2, 4, 4, 4, 4), (2, 8, 2, 2, 2)]
    assert model(vols).shape == (2, 2)
    with pytest.raises(ValueError, match="expected inputs of"):
        stem(torch.randn(1, 1, 8, 8, 4))


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_masked_voxels_do_not_reach_the_encoder(stem):
    # The encoder sees the kept patches only: changing every voxel of the removed patches
    # leaves its output unchanged (for the conv stem too, whose 3x3x3 windows overlap patch
    # borders); changing a kept one changes it.
    model = mae3d(img_size=8, stem=stem, stem_width=4).eval()
    vols = torch.randn(2, 1, 8, 8, 8)
    g = torch.Generator().manual_seed(0)
    ids_keep, mask, _ = random_masking(2, 8, 0.5, generator=g)
    voxel_mask = unpatchify3d(mask[..., None].expand(-1, -1, 64), 4, 1, (2, 2, 2)).bool()
    changed = torch.where(voxel_mask, torch.randn_like(vols) * 5, vols)
    with torch.no_grad():
        ref = model.encoder.forward_features(vols, ids_keep)
        out = model.encoder.forward_features(changed, ids_keep)
        kept_changed = model.encoder.forward_features(
            torch.where(voxel_mask, vols, vols + 1.0), ids_keep)
    torch.testing.assert_close(out, ref)
    assert not torch.allclose(kept_changed, ref)


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_encoder_is_equivariant_to_the_order_of_kept_patches(stem):
    # Each kept token carries its own patch's 3-D position: permuting ids_keep permutes the
    # output tokens the same way.
    model = vit3d(img_size=8, num_classes=0, stem=stem, stem_width=4).eval()
    vols = torch.randn(2, 1, 8, 8, 8)
    ids_keep = torch.tensor([[0, 5, 7], [6, 1, 2]])
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        out = model.forward_features(vols, ids_keep)[:, 1:]
        out_perm = model.forward_features(vols, ids_keep[:, perm])[:, 1:]
    torch.testing.assert_close(out_perm, out[:, perm], atol=1e-5, rtol=1e-5)


def test_3d_mae_loss_counts_removed_patches_only():
    model = mae3d(img_size=8)
    vols = torch.randn(2, 1, 8, 8, 8)
    loss, pred, mask = model(vols, generator=torch.Generator().manual_seed(0))
    assert pred.shape == (2, 8, 64) and mask.shape == (2, 8) and mask.sum() == 2 * 6
    kept = (mask == 0)[..., None]  # (B, L, 1)
    other = torch.where(kept, torch.randn_like(pred) * 10, pred)
    torch.testing.assert_close(model.loss(vols, other, mask), loss)


@pytest.mark.parametrize("stem", ["patch", "conv"])
def test_3d_mae_learns_a_tiny_set(stem):
    # Adam steps on four volumes under one fixed mask: the masked-voxel loss falls below
    # ~0.98, what predicting each patch's mean scores on per-patch normalised targets (the
    # model learns the removed voxels themselves).
    model = mae3d(img_size=8, mask_ratio=0.5, stem=stem, stem_width=4)
    g = torch.Generator().manual_seed(0)
    vols = (torch.rand(4, 1, 8, 8, 8, generator=g) > 0.5).float()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, _, _ = model(vols, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.9 < sum(losses[:5]) / 5
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

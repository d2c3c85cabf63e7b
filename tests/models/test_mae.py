"""MAE: patchify, random masking, the decoder's un-shuffle, the loss, gradients, overfitting."""

from __future__ import annotations

import pytest
import torch

from vitmae.models.mae import MaskedAutoencoder, patchify, random_masking, unpatchify
from vitmae.models.vit import VisionTransformer


@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("H, W", [(8, 8), (8, 12), (16, 8)])
@pytest.mark.parametrize("p", [2, 4])
def test_unpatchify_inverts_patchify(C, H, W, p):
    imgs = torch.randn(2, C, H, W)
    x = patchify(imgs, p)
    assert x.shape == (2, (H // p) * (W // p), p * p * C)
    assert torch.equal(unpatchify(x, p, C, (H // p, W // p)), imgs)


def test_patchify_order_matches_a_reference_loop():
    # Patches row-major over the grid; inside a patch, pixels (row, col) with channels last.
    p, C, H, W = 2, 3, 4, 6
    imgs = torch.arange(2 * C * H * W, dtype=torch.float32).reshape(2, C, H, W)
    x = patchify(imgs, p)  # (B, L, p*p*C)
    w = W // p
    for b in range(2):
        for l in range(x.shape[1]):
            i, j = divmod(l, w)
            ref = [imgs[b, c, i * p + r, j * p + s].item()
                   for r in range(p) for s in range(p) for c in range(C)]
            assert x[b, l].tolist() == ref


@pytest.mark.parametrize("L, ratio", [(49, 0.75), (16, 0.5), (64, 0.6), (10, 0.0)])
def test_random_masking_properties(L, ratio):
    B = 8
    g = torch.Generator().manual_seed(0)
    ids_keep, mask, ids_restore = random_masking(B, L, ratio, generator=g)
    L_keep = int(L * (1 - ratio))
    assert ids_keep.shape == (B, L_keep) and mask.shape == ids_restore.shape == (B, L)
    assert torch.equal(ids_restore.sort(dim=1).values, torch.arange(L).expand(B, L))
    assert (mask.sum(dim=1) == L - L_keep).all()
    kept = torch.zeros(B, L).scatter_(1, ids_keep, 1.0)  # (B, L) 1 where kept
    assert torch.equal(mask, 1 - kept)
    # ids_restore undoes the shuffle whose first L_keep entries are ids_keep
    ids_shuffle = ids_restore.argsort(dim=1)  # (B, L)
    assert torch.equal(ids_shuffle[:, :L_keep], ids_keep)


def test_random_masking_is_seeded_and_per_sample():
    a = random_masking(8, 49, 0.75, generator=torch.Generator().manual_seed(3))
    b = random_masking(8, 49, 0.75, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    mask = a[1]
    assert len({tuple(row.tolist()) for row in mask}) == 8  # each sample its own mask


def test_decoder_is_invariant_to_the_order_of_kept_tokens(micro_mae):
    # The decoder must put each latent token back at its own patch: permuting the kept patches
    # (and the un-shuffle with them) must not change any prediction.
    model = micro_mae(img_size=(12, 16)).eval()
    imgs = torch.randn(2, 1, 12, 16)
    L = 12
    g = torch.Generator().manual_seed(1)
    ids_keep, _, ids_restore = random_masking(2, L, 0.5, generator=g)
    ids_shuffle = ids_restore.argsort(dim=1)  # (B, L)
    perm = torch.randperm(ids_keep.shape[1], generator=g)
    shuffled = torch.cat([ids_shuffle[:, perm], ids_shuffle[:, perm.numel():]], dim=1)
    with torch.no_grad():
        pred = model.forward_decoder(model.encoder.forward_features(imgs, ids_keep), ids_restore)
        pred2 = model.forward_decoder(model.encoder.forward_features(imgs, shuffled[:, :6]),
                                      shuffled.argsort(dim=1))
    torch.testing.assert_close(pred2, pred, atol=1e-5, rtol=1e-5)


def _pixel_mask(mask: torch.Tensor, p: int, C: int, hw: tuple[int, int]) -> torch.Tensor:
    """mask (B, L) -> (B, C, H, W): 1 on the pixels of removed patches."""
    return unpatchify(mask[..., None].expand(-1, -1, p * p * C), p, C, hw)


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_loss_ignores_kept_patches(micro_mae, norm_pix_loss):
    model = micro_mae(img_size=(12, 16), in_chans=3, norm_pix_loss=norm_pix_loss).eval()
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(4, 3, 12, 16, generator=g)
    with torch.no_grad():
        _, pred, mask = model(imgs, generator=g)  # pred (B, L, p*p*C), mask (B, L)
    removed = _pixel_mask(mask, 4, 3, model.grid_size)  # (B, C, H, W)
    noise = torch.randn(imgs.shape, generator=g)
    base = model.loss(imgs, pred, mask)
    assert torch.equal(model.loss(imgs + noise * (1 - removed), pred, mask), base)
    assert not torch.allclose(model.loss(imgs + noise * removed, pred, mask), base)


def test_loss_is_the_mean_squared_error_over_removed_patches(micro_mae):
    model = micro_mae(norm_pix_loss=False)
    imgs, pred = torch.randn(2, 1, 16, 16), torch.randn(2, 16, 16)
    mask = torch.zeros(2, 16)
    mask[0, 3], mask[1, [0, 5, 9]] = 1, 1
    err = ((pred - patchify(imgs, 4)) ** 2).mean(dim=-1)  # (B, L)
    torch.testing.assert_close(model.loss(imgs, pred, mask), err[mask.bool()].mean())


def test_norm_pix_loss_ignores_each_patch_offset_and_scale(micro_mae):
    # Per-patch normalised targets (MAE Table 1d): an affine change of a patch's pixels
    # does not change its target.
    model = micro_mae(norm_pix_loss=True)
    imgs, pred = torch.randn(2, 1, 16, 16), torch.randn(2, 16, 16)
    mask = (torch.rand(2, 16, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    patches = patchify(imgs, 4)  # (B, L, p*p)
    scale = torch.rand(2, 16, 1) + 0.5  # (B, L, 1)
    shifted = unpatchify(patches * scale + torch.randn(2, 16, 1), 4, 1, (4, 4))
    torch.testing.assert_close(model.loss(shifted, pred, mask), model.loss(imgs, pred, mask),
                               atol=1e-4, rtol=1e-4)
    assert not torch.allclose(micro_mae(norm_pix_loss=False).loss(shifted, pred, mask),
                              model.loss(imgs, pred, mask))


@pytest.mark.parametrize("in_chans, img_size", [(1, 16), (3, (12, 16))])
def test_every_mae_parameter_gets_a_gradient(micro_mae, in_chans, img_size):
    model = micro_mae(img_size=img_size, in_chans=in_chans).train()
    H, W = model.encoder.patch_embed.img_size
    loss, pred, mask = model(torch.randn(2, in_chans, H, W))
    assert pred.shape == (2, mask.shape[1], 16 * in_chans)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_micro_mae_loss_halves_on_one_batch(micro_mae):
    g = torch.Generator().manual_seed(0)
    imgs = torch.randn(8, 1, 16, 16, generator=g)
    model = micro_mae(norm_pix_loss=False).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    losses: list[float] = []
    while len(losses) < 150 and not (losses and losses[-1] < 0.5 * losses[0]):
        loss, _, _ = model(imgs, generator=torch.Generator().manual_seed(1))  # one fixed mask
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::25]


def test_mask_ratio_zero_reconstructs_every_patch():
    """With nothing removed the loss is the MSE over all patches (not 0/0)."""
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=8, patch_size=4, in_chans=1, embed_dim=16, depth=1,
                            num_heads=2)
    mae = MaskedAutoencoder(enc, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2,
                            mask_ratio=0.0)
    imgs = torch.randn(2, 1, 8, 8)
    loss, pred, mask = mae(imgs)
    assert mask.sum() == 0
    expected = ((pred - patchify(imgs, 4)) ** 2).mean()
    torch.testing.assert_close(loss, expected)

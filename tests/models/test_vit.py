"""The ViT encoder: kept-patch equivariance, gradients, overfitting, and every variant."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitmae.config import ModelConfig
from vitmae.errors import ConfigError
from vitmae.models import arch_name
from vitmae.models.mae import random_masking
from vitmae.models.vit import resolve_arch
from vitmae.variants import VARIANTS

SMALL = [n for n, a in VARIANTS.items() if a["embed_dim"] <= 128]  # cheap to build on a CPU


@pytest.mark.parametrize("rope", [False, True])
@pytest.mark.parametrize("img_size", [16, (12, 20)])
def test_encoder_is_equivariant_to_the_order_of_kept_patches(micro_vit, img_size, rope):
    # A position embedding added after the gather (or with rows and columns swapped) would
    # tie a token's position to its slot, not to its patch: the outputs would not permute.
    # The same holds for the rotary positions (RoPE) of the kept patches.
    model = micro_vit(img_size=img_size, num_classes=0, rope=rope).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, *model.patch_embed.img_size, generator=g)  # (B, C, H, W)
    L = model.patch_embed.num_patches
    ids_keep, _, _ = random_masking(3, L, 0.5, generator=g)  # (B, L_keep)
    perm = torch.randperm(ids_keep.shape[1], generator=g)
    with torch.no_grad():
        out = model.forward_features(x, ids_keep)  # (B, 1+L_keep, D)
        out_perm = model.forward_features(x, ids_keep[:, perm])
    torch.testing.assert_close(out_perm[:, 1:], out[:, 1:][:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_perm[:, 0], out[:, 0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rope", [False, True])
def test_all_patches_in_order_equals_no_mask(micro_vit, rope):
    model = micro_vit(img_size=(12, 16), rope=rope).eval()
    x = torch.randn(2, 1, 12, 16)
    L = model.patch_embed.num_patches
    ids_all = torch.arange(L).expand(2, L)  # (B, L)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x, ids_all), model.forward_features(x))


def test_a_kept_patch_carries_its_own_position(micro_vit):
    model = micro_vit(img_size=(8, 12))
    x = torch.randn(2, 1, 8, 12)
    ids_keep = torch.tensor([[4], [1]])  # one patch per sample, (B, 1)
    with torch.no_grad():
        tokens = model.embed(x, ids_keep)  # (B, 2, D)
        patches = model.patch_embed(x)  # (B, L, D)
    for b, l in enumerate(ids_keep[:, 0].tolist()):
        torch.testing.assert_close(tokens[b, 1], patches[b, l] + model.pos_embed[0, 1 + l])
        torch.testing.assert_close(tokens[b, 0], model.cls_token[0, 0] + model.pos_embed[0, 0])


@pytest.mark.parametrize("global_pool", ["avg", "token"])
def test_every_classifier_parameter_gets_a_gradient(micro_vit, global_pool):
    model = micro_vit(global_pool=global_pool).train()
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(model(x), y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_token_pooling_reads_the_class_token_only(micro_vit):
    model = micro_vit(global_pool="token", num_classes=0).eval()
    feats = torch.randn(2, 5, 32)  # (B, 1+L, D)
    out = model.forward_head(feats)
    feats[:, 1:] = 0
    torch.testing.assert_close(model.forward_head(feats), out)


def test_pool_override_reads_the_other_tokens_and_needs_a_class_token(micro_vit):
    model = micro_vit(global_pool="token", num_classes=0).eval()
    feats = torch.randn(2, 5, 32)  # (B, 1+L, D)
    torch.testing.assert_close(model.pool(feats), feats[:, 0])  # its own: the class token
    torch.testing.assert_close(model.pool(feats, "avg"), feats[:, 1:].mean(1))
    no_cls = micro_vit(global_pool="avg", class_token=False, num_classes=0)
    with pytest.raises(ConfigError, match="class token"):
        no_cls.pool(torch.randn(2, 4, 32), "token")


def test_micro_classifier_overfits_one_batch(micro_vit):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 16, 16, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    model = micro_vit().train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(200):
        logits = model(x)  # (B, K)
        if (logits.argmax(-1) == y).all():
            break
        opt.zero_grad()
        F.cross_entropy(logits, y).backward()
        opt.step()
    assert (model(x).argmax(-1) == y).all(), "not 100% train accuracy after 200 steps"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_sizes_are_consistent(name):
    arch = resolve_arch(ModelConfig(arch=name))
    assert arch["embed_dim"] % arch["num_heads"] == 0
    assert arch["embed_dim"] % 4 == 0  # 2-D sin-cos position embedding
    assert name.endswith(f"_patch{arch['patch_size']}")  # the name says the patch size


def test_resolve_arch_applies_overrides():
    arch = resolve_arch(ModelConfig(arch="vit_base_patch16", depth=3, num_heads=4))
    assert arch == dict(patch_size=16, embed_dim=768, depth=3, num_heads=4)


def test_arch_name_lists_the_sizes_overrides_change():
    assert arch_name(ModelConfig(arch="vit_mini_patch8")) == "vit_mini_patch8"
    assert arch_name(ModelConfig(arch="vit_mini_patch8", depth=6)) == "vit_mini_patch8"
    assert (arch_name(ModelConfig(arch="vit_mini_patch8", patch_size=4, embed_dim=64))
            == "vit_mini_patch8 (patch_size=4, embed_dim=64)")


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("img_size", [28, 32, (24, 32)])
def test_small_variants_build_and_classify(micro_vit, name, in_chans, img_size):
    p = VARIANTS[name]["patch_size"]
    H, W = (img_size, img_size) if isinstance(img_size, int) else img_size
    if H % p or W % p:
        pytest.skip(f"{H}x{W} is not divisible by patch {p}")
    model = micro_vit(img_size=img_size, in_chans=in_chans, num_classes=5, arch=name).eval()
    assert model.patch_embed.grid_size == (H // p, W // p)
    with torch.no_grad():
        out = model(torch.randn(2, in_chans, H, W))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_patch4_on_28px_gives_a_7x7_grid(micro_vit):
    model = micro_vit(img_size=28)
    assert model.patch_embed.grid_size == (7, 7)
    assert model.pos_embed.shape == (1, 1 + 49, 32)


def test_wrong_image_size_is_refused(micro_vit):
    with pytest.raises(ValueError, match="not divisible"):
        micro_vit(img_size=18)
    with pytest.raises(ValueError, match="expected images of"):
        micro_vit(img_size=16)(torch.randn(1, 1, 20, 20))

"""Patch dropout in fine-tuning: training keeps a seeded random subset of patch tokens per
image, evaluation keeps every token, and the options it cannot apply to are refused."""

from __future__ import annotations

import json

import pytest
import torch

from vitmae.config import ConfigError, load_config
from vitmae.models.masking import kept_ids, random_masking
from vitmae.train.runner import run_finetune


def _tokens_into_first_block(model, x, generator=None) -> int:
    seen = []
    hook = model.blocks[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].shape))
    model(x, generator=generator)
    hook.remove()
    return seen[0][1]


@pytest.mark.parametrize("patch_drop, kept", [(0.5, 8), (0.25, 12), (0.9, 2)])
def test_training_keeps_the_rounded_share_of_patches_and_evaluation_all(micro_vit, patch_drop,
                                                                         kept):
    model = micro_vit(img_size=16, patch_drop=patch_drop)  # 16 patches + the class token
    x = torch.randn(2, 1, 16, 16)  # (B, C, H, W)
    assert _tokens_into_first_block(model.train(), x) == 1 + kept
    assert _tokens_into_first_block(model.eval(), x) == 1 + 16


def test_a_dropped_forward_is_the_encoder_on_the_kept_patches(micro_vit):
    # The kept tokens carry their own positions: the pooled features equal those of the
    # encoder run on the same kept ids explicitly, and differ from the full image's.
    model = micro_vit(img_size=16, num_classes=0, patch_drop=0.5).train()
    x = torch.randn(3, 1, 16, 16)  # (B, C, H, W)
    feats = model(x, generator=torch.Generator().manual_seed(7))  # (B, D)
    ids_keep = model.kept_patches(x, torch.Generator().manual_seed(7))  # (B, 8)
    assert ids_keep.shape == (3, 8)
    assert all(len(set(row.tolist())) == 8 for row in ids_keep)  # distinct patches per image
    assert not torch.equal(ids_keep[0], ids_keep[1])  # drawn per image
    model.eval()
    with torch.no_grad():
        explicit = model.forward_head(model.forward_features(x, ids_keep))
        full = model(x)
    torch.testing.assert_close(feats.detach(), explicit, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(feats.detach(), full, atol=1e-2)


def test_draws_follow_the_generator(micro_vit):
    model = micro_vit(img_size=16, num_classes=0, patch_drop=0.5).train()
    x = torch.randn(2, 1, 16, 16)
    a, b, c = (model(x, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c, atol=1e-2)


def test_patch_drop_draws_the_permutation_mae_masks_with():
    """One seeded draw serves both: PatchDropout keeps the ids MAE keeps at the same ratio;
    only the count's rounding differs (PatchDropout rounds and keeps at least one)."""
    for seed in range(3):
        ids = kept_ids(4, 16, 0.5, generator=torch.Generator().manual_seed(seed))  # (4, 8)
        mae_ids, _, _ = random_masking(4, 16, 0.5, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(ids, mae_ids)
    assert kept_ids(2, 3, 0.9).shape == (2, 1)
    assert random_masking(2, 3, 0.9)[0].shape == (2, 0)
    assert kept_ids(2, 10, 0.25).shape == (2, 8) and random_masking(2, 10, 0.25)[0].shape == (2, 7)


def test_evaluation_equals_the_model_without_patch_drop(micro_vit):
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        dropped = micro_vit(img_size=16, num_classes=0, patch_drop=0.5).eval()(x)
        plain = micro_vit(img_size=16, num_classes=0).eval()(x)
    torch.testing.assert_close(dropped, plain)


def test_the_hybrid_stem_drops_tokens_too(micro_vit):
    model = micro_vit(img_size=16, patch_drop=0.5, stem="conv", stem_width=8).train()
    x = torch.randn(2, 1, 16, 16)
    assert _tokens_into_first_block(model, x) == 1 + 8
    model(x).sum().backward()  # the stem gets gradients through the kept tokens
    assert model.patch_embed.stem[0].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("overrides, fragment", [
    (["model.patch_drop=1.0"], "must be in [0, 1), got 1.0"),
    (["model.patch_drop=-0.1"], "must be in [0, 1), got -0.1"),
    (["task=segment", "data.dataset=mnist_seg", "model.patch_drop=0.5"], "a segment head"),
    (["model.arch=resnet18", "finetune.optim.layer_decay=1.0", "run.shards=1",
      "model.patch_drop=0.5"], "resnet18 has none"),
])
def test_what_patch_drop_cannot_do_is_refused_by_name(overrides, fragment):
    with pytest.raises(ConfigError) as e:
        load_config("digits", overrides)
    assert str(e.value).startswith("model.patch_drop:")
    assert fragment in str(e.value)


@pytest.mark.slow
def test_a_finetuning_run_with_patch_drop_learns(tmp_path):
    # the option goes from the config through the runner to the model: a short digits run
    # with half the tokens dropped still learns well above chance
    cfg = load_config("digits", ["model.arch=vit_micro_patch4", "model.patch_drop=0.5",
                                 "finetune.optim.epochs=20", "finetune.optim.warmup_epochs=1",
                                 "finetune.pretrained=null",
                                 f"run.output_dir={tmp_path}", "run.name=ft"])
    run = run_finetune(cfg, log=lambda *_: None)
    assert cfg.model.patch_drop == 0.5
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"top1"' in line]
    assert evals and evals[-1]["top1"] > 0.5

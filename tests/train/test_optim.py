"""The lr schedule, weight-decay groups and layer-wise lr decay (MAE's lr_sched / lr_decay)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from vitmae.config import OptimConfig
from vitmae.train.optim import base_lr, build_optimizer, lr_at, param_groups, set_lr

LR = 1e-3


def test_lr_warms_up_from_zero_peaks_then_decays_to_min_lr():
    cfg = OptimConfig(epochs=10, warmup_epochs=2, min_lr=1e-6)
    assert lr_at(0.0, LR, cfg) == 0.0
    assert lr_at(1.0, LR, cfg) == pytest.approx(LR / 2)
    assert lr_at(2.0, LR, cfg) == pytest.approx(LR)
    assert lr_at(10.0, LR, cfg) == pytest.approx(1e-6)
    assert lr_at(12.0, LR, cfg) == pytest.approx(1e-6)  # clamped after the last epoch
    lrs = [lr_at(e / 10, LR, cfg) for e in range(101)]
    peak = lrs.index(max(lrs))
    assert peak == 20
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1], strict=True))
    assert all(a >= b for a, b in zip(lrs[peak:-1], lrs[peak + 1:], strict=True))


def test_constant_schedule_and_no_warmup():
    assert lr_at(0.0, LR, OptimConfig(epochs=5, warmup_epochs=0)) == LR
    cfg = OptimConfig(epochs=5, warmup_epochs=1, schedule="constant")
    assert [lr_at(e, LR, cfg) for e in (0.5, 1, 3, 5)] == [LR / 2, LR, LR, LR]


def test_base_lr_follows_the_mae_scaling_rule():
    assert base_lr(OptimConfig(blr=1.5e-4), 4096) == pytest.approx(2.4e-3)
    assert base_lr(OptimConfig(blr=1.5e-4, lr=0.01), 4096) == 0.01


def _group_of(groups: list[dict], model: nn.Module) -> dict[str, dict]:
    """parameter name -> its group."""
    by_id = {id(p): g for g in groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in model.named_parameters()}


def test_weight_decay_only_on_matrices(micro_vit, micro_mae):
    for model in (micro_vit(), micro_mae()):
        groups = param_groups(model, weight_decay=0.05)
        for name, g in _group_of(groups, model).items():
            p = model.get_parameter(name)
            exempt = p.ndim < 2 or name.endswith(("cls_token", "pos_embed", "mask_token"))
            assert g["weight_decay"] == (0.0 if exempt else 0.05), name
        assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_a_learned_pos_embed_is_not_decayed():
    model = nn.Module()
    model.pos_embed = nn.Parameter(torch.zeros(1, 5, 8))
    model.proj = nn.Linear(8, 8)
    g = _group_of(param_groups(model, 0.05), model)
    assert g["pos_embed"]["weight_decay"] == 0.0 and g["proj.weight"]["weight_decay"] == 0.05


def test_frozen_parameters_are_left_out(micro_vit):
    model = micro_vit()
    model.patch_embed.requires_grad_(False)
    params = [p for g in param_groups(model, 0.05) for p in g["params"]]
    assert all(p.requires_grad for p in params)
    assert len(params) == len(list(model.parameters())) - 2


def test_layer_decay_scales(micro_vit):
    model, d, depth = micro_vit(depth=3), 0.5, 3
    scale = {n: g["lr_scale"] for n, g in _group_of(param_groups(model, 0.05, d, depth),
                                                      model).items()}
    assert scale["head.weight"] == scale["head.bias"] == scale["norm.weight"] == 1.0
    for i in range(depth):
        assert scale[f"blocks.{i}.attn.qkv.weight"] == pytest.approx(d ** (depth - i))
        assert scale[f"blocks.{i}.norm1.bias"] == pytest.approx(d ** (depth - i))
    assert scale["patch_embed.proj.weight"] == pytest.approx(d ** (depth + 1))
    assert scale["cls_token"] == pytest.approx(d ** (depth + 1))


def test_layer_decay_with_a_prefix_leaves_the_decoder_at_full_lr(micro_vit):
    model = nn.Module()
    model.encoder = micro_vit(num_classes=0)
    model.decoder = nn.Linear(32, 3)
    groups = param_groups(model, 0.05, 0.5, depth=2, prefix="encoder.")
    scale = {n: g["lr_scale"] for n, g in _group_of(groups, model).items()}
    assert scale["decoder.weight"] == 1.0
    assert scale["encoder.blocks.0.mlp.fc1.weight"] == pytest.approx(0.25)
    assert scale["encoder.patch_embed.proj.bias"] == pytest.approx(0.125)


@pytest.mark.parametrize("prefix", ["encoder.", ""])
def test_head_lr_mult_scales_the_head_only_on_top_of_layer_decay(micro_vit, prefix):
    vit = micro_vit(num_classes=0 if prefix else 10)
    if prefix:  # a segmenter: encoder + a separate head module
        model = nn.Module()
        model.encoder, model.head = vit, nn.Linear(32, 3)
    else:  # a classifier: the ViT with its own `head`
        model = vit
    groups = param_groups(model, 0.05, 0.5, depth=2, prefix=prefix, head_lr_mult=10.0)
    scale = {n: g["lr_scale"] for n, g in _group_of(groups, model).items()}
    assert scale["head.weight"] == scale["head.bias"] == pytest.approx(10.0)
    assert scale[f"{prefix}norm.weight"] == 1.0  # the encoder's last norm is not the head
    assert scale[f"{prefix}blocks.1.attn.qkv.weight"] == pytest.approx(0.5)
    assert scale[f"{prefix}patch_embed.proj.weight"] == pytest.approx(0.125)


def test_set_lr_applies_each_groups_scale(micro_vit):
    model = micro_vit()
    opt = build_optimizer(param_groups(model, 0.05, 0.5, depth=2), OptimConfig(), lr=0.0)
    set_lr(opt, LR)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx(
        [LR * 0.125, LR * 0.25, LR * 0.5, LR])


def test_plain_adam_has_no_weight_decay(micro_vit):
    model = micro_vit()
    opt = build_optimizer(param_groups(model, 0.05), OptimConfig(optimizer="adam"), lr=LR)
    assert type(opt) is torch.optim.Adam
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups)
    assert math.isclose(opt.param_groups[0]["lr"], LR)


def test_the_lr_follows_the_half_cosine_between_warmup_and_the_last_epoch():
    cfg = OptimConfig(epochs=10, warmup_epochs=2, min_lr=1e-6)
    for epoch, progress in ((4.0, 0.25), (6.0, 0.5), (8.0, 0.75)):  # (epoch - 2) / (10 - 2)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        assert lr_at(epoch, LR, cfg) == pytest.approx(1e-6 + (LR - 1e-6) * cosine)


def test_a_run_shorter_than_an_epoch_after_warmup_decays_to_min_lr():
    cfg = OptimConfig(epochs=1, warmup_epochs=0.5, min_lr=1e-6)
    assert lr_at(0.75, LR, cfg) == pytest.approx(1e-6 + (LR - 1e-6) * 0.5)
    assert lr_at(1.0, LR, cfg) == pytest.approx(1e-6)


def test_without_layer_decay_every_group_trains_at_the_lr(micro_vit):
    opt = build_optimizer(param_groups(micro_vit(), 0.05), OptimConfig(), lr=0.0)
    set_lr(opt, LR)
    assert [g["lr"] for g in opt.param_groups] == [LR] * len(opt.param_groups)


def test_the_mae_decoders_tokens_are_not_decayed_under_the_encoder_prefix(micro_mae):
    """Pretraining names the encoder by its prefix: the MAE's own mask_token and
    decoder_pos_embed, outside the encoder, are still exempt."""
    model = micro_mae()
    g = _group_of(param_groups(model, 0.05, prefix="encoder."), model)
    assert g["mask_token"]["weight_decay"] == g["encoder.cls_token"]["weight_decay"] == 0.0
    assert g["decoder_embed.weight"]["weight_decay"] == 0.05


def test_with_a_prefix_all_outside_the_encoder_is_head_whatever_its_name(micro_vit):
    model = nn.Module()
    model.encoder = micro_vit(num_classes=0)
    model.blocks = nn.Linear(32, 3)  # a decoder named as a ViT's own blocks
    groups = param_groups(model, 0.05, 0.5, depth=2, prefix="encoder.", head_lr_mult=10.0)
    scale = {n: g["lr_scale"] for n, g in _group_of(groups, model).items()}
    assert scale["blocks.weight"] == scale["blocks.bias"] == pytest.approx(10.0)
    assert scale["encoder.blocks.1.norm1.weight"] == pytest.approx(0.5)


def test_encoder_start_holds_the_encoder_at_lr_zero_until_then(micro_mae):
    model = micro_mae()
    groups = param_groups(model, 0.05, prefix="encoder.", encoder_lr_mult=0.5,
                          encoder_start=1.0)
    opt = build_optimizer(groups, OptimConfig(), lr=0.0)
    lr_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    encoder, decoder = model.encoder.blocks[0].mlp.fc1.weight, model.decoder_pred.weight
    for epoch, encoder_lr in ((0.0, 0.0), (0.5, 0.0), (1.0, LR / 2), (2.0, LR / 2)):
        set_lr(opt, LR, epoch)
        assert lr_of[id(encoder)]["lr"] == encoder_lr, epoch
        assert lr_of[id(decoder)]["lr"] == LR, epoch


def test_set_lr_takes_groups_without_a_scale_or_a_start_as_they_are():
    opt = torch.optim.SGD(nn.Linear(3, 2).parameters(), lr=0.5)
    set_lr(opt, LR, epoch=0.0)
    assert opt.param_groups[0]["lr"] == LR


def test_the_default_optimizer_is_fused_adamw_with_the_configs_lr_and_betas(micro_vit):
    cfg = OptimConfig(betas=(0.9, 0.95))  # MAE's betas, not torch's default
    opt = build_optimizer(param_groups(micro_vit(), 0.05), cfg, lr=0.02)
    assert type(opt) is torch.optim.AdamW
    assert opt.defaults["fused"] is True  # CPU parameters: torch has a fused kernel
    for g in opt.param_groups:
        assert g["lr"] == 0.02 and g["betas"] == (0.9, 0.95)
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.05}


def test_a_torch_without_the_fused_kernel_gets_the_same_optimizer_unfused(micro_vit,
                                                                          monkeypatch):
    class Unfused(torch.optim.AdamW):  # as an older torch: no `fused` argument
        def __init__(self, params, fused=None, **kwargs):
            if fused is not None:
                raise TypeError("__init__() got an unexpected keyword argument 'fused'")
            super().__init__(params, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", Unfused)
    model = micro_vit()
    groups = param_groups(model, 0.05)
    opt = build_optimizer(groups, OptimConfig(betas=(0.9, 0.95)), lr=0.02)
    assert type(opt) is Unfused and not opt.defaults["fused"]
    assert [g["params"] for g in opt.param_groups] == [g["params"] for g in groups]
    for g in opt.param_groups:
        assert g["lr"] == 0.02 and g["betas"] == (0.9, 0.95)

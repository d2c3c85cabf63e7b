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

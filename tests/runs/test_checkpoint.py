"""Checkpoints round-trip weights, optimizer and RNG state; encoders load with exact key checks."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from vitmae.models.pos_embed import resample_pos_embed
from vitmae.runs.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_state,
    read_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
    verify_checkpoint,
)
from vitmae.weights.encoder import load_encoder

HEAD = {"head.weight", "head.bias"}


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_save_list_verify_read_round_trip(tmp_path, micro_mae):
    model = micro_mae()
    ckpt = save_checkpoint(tmp_path, 7, model, {"progress": {"step": 7}}, {"task": "x"})
    assert list_checkpoints(tmp_path) == [ckpt]
    verify_checkpoint(ckpt)
    for source in (tmp_path, ckpt, ckpt / "model.safetensors"):
        _assert_same_state(read_weights(source), model.state_dict())
    assert load_state(ckpt)["progress"] == {"step": 7}


def test_a_wrapped_model_is_saved_unwrapped(tmp_path, micro_vit):
    model = micro_vit()
    wrapper = nn.Module()
    wrapper.module = model  # as DistributedDataParallel holds it
    save_checkpoint(tmp_path, 1, wrapper, {}, {})
    _assert_same_state(read_weights(tmp_path), model.state_dict())


def test_keep_last_prunes_the_oldest(tmp_path, micro_vit):
    model = micro_vit()
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model, {}, {}, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000003", "ckpt-000000004"]
    assert not list(tmp_path.glob(".tmp*"))


def test_read_weights_takes_the_newest_checkpoint(tmp_path, micro_vit):
    save_checkpoint(tmp_path, 1, micro_vit(seed=1), {}, {})
    newer = micro_vit(seed=2)
    save_checkpoint(tmp_path, 2, newer, {}, {})
    _assert_same_state(read_weights(tmp_path), newer.state_dict())


def test_optimizer_and_rng_state_round_trip(tmp_path, micro_vit):
    model = micro_vit()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    opt.step()
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    ckpt = save_checkpoint(tmp_path, 1, model, {"optimizer": opt.state_dict(),
                                                "rng": rng_state()}, {})
    expected = (torch.rand(4), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)

    state = load_state(ckpt)
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(state["optimizer"])
    for p in model.parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt2.state[p][key], opt.state[p][key])


def test_an_mae_encoder_loads_missing_exactly_the_head(micro_mae, micro_vit):
    mae, clf = micro_mae(seed=1), micro_vit(seed=2)
    missing = load_encoder(clf, mae.state_dict(), log=lambda _: None)
    assert missing == HEAD
    encoder = mae.encoder.state_dict()
    _assert_same_state({k: v for k, v in clf.state_dict().items() if k not in HEAD}, encoder)


def test_a_public_mae_state_without_prefix_loads(micro_mae, micro_vit):
    # facebookresearch/mae checkpoints: encoder keys at the top level, decoder_* and mask_token.
    mae, clf = micro_mae(seed=1), micro_vit(seed=2)
    public = {k.removeprefix("encoder."): v for k, v in mae.state_dict().items()}
    assert "mask_token" in public and any(k.startswith("decoder_") for k in public)
    assert load_encoder(clf, public, log=lambda _: None) == HEAD
    assert torch.equal(clf.blocks[1].mlp.fc2.weight, mae.encoder.blocks[1].mlp.fc2.weight)


def test_an_unexpected_key_is_listed(micro_mae, micro_vit):
    state = micro_mae().state_dict()
    state["encoder.blocks.0.attn.extra"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.attn\.extra"):
        load_encoder(micro_vit(), state)


def test_a_missing_encoder_key_is_listed(micro_mae, micro_vit):
    state = micro_mae().state_dict()
    del state["encoder.blocks.1.norm2.weight"]
    with pytest.raises(CheckpointError, match=r"blocks\.1\.norm2\.weight"):
        load_encoder(micro_vit(), state)


def test_a_wrong_shape_is_listed(micro_mae, micro_vit):
    wide = micro_mae(embed_dim=64).state_dict()
    with pytest.raises(CheckpointError, match=r"blocks\.0\.attn\.qkv\.weight: checkpoint"):
        load_encoder(micro_vit(), wide)


def test_a_pos_embed_of_another_grid_is_resampled_with_a_log_line(micro_mae, micro_vit):
    mae = micro_mae(img_size=16)  # 4x4 grid
    clf = micro_vit(img_size=32)  # 8x8 grid
    lines: list[str] = []
    assert load_encoder(clf, mae.state_dict(), log=lines.append) == HEAD
    assert any("4x4" in line and "8x8" in line for line in lines), lines
    expected = resample_pos_embed(mae.encoder.pos_embed, (8, 8))  # (1, 1+64, D)
    assert clf.pos_embed.shape == (1, 65, 32)
    torch.testing.assert_close(clf.pos_embed, expected)
    torch.testing.assert_close(clf.pos_embed[:, 0], mae.encoder.pos_embed[:, 0])


def test_a_torch_file_with_a_model_key_reads(tmp_path, micro_vit):
    state = micro_vit().state_dict()
    torch.save({"model": state, "epoch": 3}, tmp_path / "public.pth")
    save_file(state, str(tmp_path / "w.safetensors"))
    _assert_same_state(read_weights(tmp_path / "public.pth"), state)
    _assert_same_state(read_weights(tmp_path / "w.safetensors"), state)
    with pytest.raises(CheckpointError):
        read_weights(tmp_path / "missing.safetensors")

"""Checkpoints round-trip weights, optimizer and RNG state; encoders load with exact key checks;
the training loop's Checkpointer saves and resumes a run's position, and refuses diverged
weights.

Ranks are simulated by setting `vitmae.distributed`'s rank, world size and gather: no processes.
"""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

import vitmae.distributed
import vitmae.runs.checkpoint
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
from vitmae.runs.folder import RunDir
from vitmae.train.checkpointer import Checkpointer, Progress
from vitmae.train.steps import DivergenceError
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


def _checkpointer(path, model: nn.Module, keep_last: int = 2) -> Checkpointer:
    """A Checkpointer of `model` with a fresh AdamW, in the run folder `path`."""
    path.mkdir(exist_ok=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return Checkpointer(RunDir(path), model, opt, {"task": "x"}, keep_last)


def test_the_checkpointer_resumes_weights_optimizer_position_records_and_rng(tmp_path,
                                                                             micro_vit):
    saver = _checkpointer(tmp_path / "run", micro_vit(seed=1))
    assert saver.last is None  # before the first save
    saver.model(torch.randn(2, 1, 16, 16)).sum().backward()
    saver.optimizer.step()
    saver.run.log({"step": 3})
    torch.manual_seed(5)
    ckpt = saver.save(Progress(epoch=1, batch=2, step=3), {"loss": 2.0})
    assert ckpt == saver.last == tmp_path / "run" / "ckpt-000000003"
    assert json.loads((ckpt / "meta.json").read_text())["config"] == {"task": "x"}
    draws = torch.rand(3)
    saver.run.log({"step": 4})  # logged after the save: a resume drops it
    partial = tmp_path / "run" / ".tmp-ckpt-000000004-99"  # a save killed half-way
    partial.mkdir()

    resumer, lines = _checkpointer(tmp_path / "run", micro_vit(seed=2)), []
    prog, meter = resumer.resume(ckpt, log=lines.append)
    assert prog == Progress(epoch=1, batch=2, step=3) and meter == {"loss": 2.0}
    assert resumer.last == ckpt
    _assert_same_state(resumer.model.state_dict(), saver.model.state_dict())
    for p, q in zip(resumer.model.parameters(), saver.model.parameters(), strict=True):
        assert torch.equal(resumer.optimizer.state[p]["exp_avg"],
                           saver.optimizer.state[q]["exp_avg"])
    assert torch.equal(torch.rand(3), draws)
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r) for r in records] == [{"step": 3}]
    assert not partial.exists()
    assert any(".tmp-ckpt-000000004-99" in line for line in lines), lines
    assert f"resumed from {ckpt} at epoch 1, batch 2, step 3" in lines


def test_the_checkpointer_keeps_the_last_keep_last_saves(tmp_path, micro_vit):
    saver = _checkpointer(tmp_path, micro_vit(), keep_last=1)
    for step in (1, 2, 3):
        saver.save(Progress(step=step), {})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000003"]


def _state_after(seed: int) -> tuple[dict, torch.Tensor]:
    """(the RNG state after seeding with `seed`, the first draw it gives)."""
    torch.manual_seed(seed), np.random.seed(seed), random.seed(seed)
    state = rng_state()
    return state, torch.rand(2)


def _as_rank(monkeypatch, rank: int, world: int, gathered: list | None = None) -> None:
    """What `vitmae.distributed` reports from now on; `gathered`: every rank's RNG state."""
    monkeypatch.setattr(vitmae.distributed, "rank", lambda: rank)
    monkeypatch.setattr(vitmae.distributed, "world_size", lambda: world)
    if gathered is not None:
        monkeypatch.setattr(vitmae.distributed, "gather_objects", lambda _: gathered)


def test_each_rank_resumes_its_own_random_state(tmp_path, micro_vit, monkeypatch):
    (s0, draw0), (s1, draw1) = _state_after(10), _state_after(11)
    _as_rank(monkeypatch, 0, 2, gathered=[s0, s1])
    ckpt = _checkpointer(tmp_path, micro_vit()).save(Progress(step=1), {})
    for rank, draw in ((0, draw0), (1, draw1)):
        _as_rank(monkeypatch, rank, 2)
        lines = []
        _checkpointer(tmp_path, micro_vit()).resume(ckpt, log=lines.append)
        assert torch.equal(torch.rand(2), draw), rank
        assert not any("process(es)" in line for line in lines), lines


@pytest.mark.parametrize(("saved_by", "rank", "world"), [(2, 0, 1), (1, 1, 2)])
def test_another_number_of_ranks_resumes_the_first_ranks_state_and_says_so(
        tmp_path, micro_vit, monkeypatch, saved_by, rank, world):
    states = [_state_after(10 + r) for r in range(saved_by)]  # [(state, its first draw)]
    _as_rank(monkeypatch, 0, saved_by, gathered=[s for s, _ in states])
    ckpt = _checkpointer(tmp_path, micro_vit()).save(Progress(step=1), {})
    _as_rank(monkeypatch, rank, world)
    lines = []
    _checkpointer(tmp_path, micro_vit()).resume(ckpt, log=lines.append)
    assert torch.equal(torch.rand(2), states[0][1])
    said = f"saved by {saved_by} process(es), resumed by {world}"
    assert any(said in line and "differ" in line for line in lines), lines


def test_a_checkpoint_of_one_rng_state_resumes(tmp_path, micro_vit):
    """Checkpoints written before each rank's state was kept hold `rng` only."""
    saver = _checkpointer(tmp_path, micro_vit())
    state, draw = _state_after(10)
    ckpt = saver.save(Progress(step=1), {})
    old = {**load_state(ckpt), "rng": state}
    del old["rng_ranks"]
    torch.save(old, ckpt / "state.pt")
    lines = []
    _checkpointer(tmp_path, micro_vit()).resume(ckpt, log=lines.append)
    assert torch.equal(torch.rand(2), draw)
    assert not any("process(es)" in line for line in lines), lines


def test_diverged_weights_are_not_saved(tmp_path, micro_vit):
    saver = _checkpointer(tmp_path, micro_vit())
    saver.model.head.bias.data[3] = float("nan")
    advice = r"Lower the lr or raise warmup_epochs\."
    with pytest.raises(DivergenceError, match=r"weight head\.bias is not finite after step 4 "
                       r"\(epoch 1\); no checkpoint written; last good checkpoint: none\. "
                       + advice):
        saver.save(Progress(epoch=1, step=4), {})
    assert list_checkpoints(tmp_path) == []
    saver.model.head.bias.data[3] = 0.0
    good = saver.save(Progress(epoch=1, step=5), {})
    saver.model.head.bias.data[3] = float("inf")
    named = f"last good checkpoint: {re.escape(str(good))}\\. {advice}"
    with pytest.raises(DivergenceError, match=named):
        saver.save(Progress(epoch=1, step=6), {})
    assert list_checkpoints(tmp_path) == [good] and saver.last == good


def test_a_failed_save_says_how_to_resume(tmp_path, micro_vit, monkeypatch):
    def disk_full(*args):
        raise OSError(28, "No space left on device")

    saver = _checkpointer(tmp_path, micro_vit())
    good = saver.save(Progress(step=1), {})
    monkeypatch.setattr(vitmae.runs.checkpoint, "save_file", disk_full)
    with pytest.raises(CheckpointError, match=f"No space left.*Stopped at step 2; .* "
                       f"--resume {re.escape(str(tmp_path))}$"):
        saver.save(Progress(step=2), {})
    assert saver.last == good

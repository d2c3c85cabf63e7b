"""Continued MAE pretraining from weights (`pretrain.init`): the decoder warm-up leaves the
encoder bit for bit as it started, the encoder's lr factor and layer decay reach the
optimizer, the distillation target is the teacher's token at the same position, the k-NN
monitor measures the starting weights before the first step, and a stopped run with all of
it on resumes bit-identical (the teacher read again from the init file)."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from reliability.cli_runs import assert_same_run, resume
from reliability.self_stop import stop_at_micro_batch
from safetensors.torch import load_file

from vitmae.cli import main
from vitmae.config import ConfigError, OptimConfig, load_config
from vitmae.models import build_mae
from vitmae.runs.checkpoint import list_checkpoints
from vitmae.train.optim import build_optimizer, set_lr
from vitmae.train.runner import pretrain_groups

# digits, 128 images / batch 32 = 4 steps per epoch
BASE = ("-c", "digits", "model.arch=vit_micro_patch4", "model.decoder_embed_dim=32",
        "model.decoder_depth=1", "model.decoder_num_heads=2", "data.subset=128",
        "data.batch_size=32", "pretrain.optim.warmup_epochs=0.5", "pretrain.knn_every=1",
        "pretrain.recon_every=0", "run.log_interval=3", "run.threads=1")
CONTINUED = ("pretrain.optim.epochs=2", "pretrain.decoder_warmup_epochs=1",
             "pretrain.encoder_lr_scale=0.5", "pretrain.optim.layer_decay=0.75",
             "pretrain.distill_weight=1.0")


def _argv(out, name: str, *extra: str) -> list[str]:
    return ["pretrain", *BASE, f"run.output_dir={out}", f"run.name={name}", *extra]


def _records(run) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(ckpt) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`start`: 1 MAE epoch from scratch; `continued`: 2 epochs from its last checkpoint with
    every continued-pretraining option on."""
    out = tmp_path_factory.mktemp("continued")
    assert main(_argv(out, "start", "pretrain.optim.epochs=1")) == 0
    init = list_checkpoints(out / "start")[-1]
    assert main(_argv(out, "continued", *CONTINUED, f"pretrain.init={init}",
                      "run.keep_last=4")) == 0
    return out, init


def test_decoder_warmup_keeps_the_encoder_then_trains_it(runs):
    out, init = runs
    start = {k: v for k, v in _weights(init).items() if k.startswith("encoder.")}
    after_warmup, last = (_weights(c) for c in list_checkpoints(out / "continued")[-2:])
    assert all(torch.equal(after_warmup[k], v) for k, v in start.items())  # epoch 1: frozen
    decoder = "decoder_pred.weight"
    assert not torch.equal(after_warmup[decoder], _weights(init)[decoder])
    still = [k for k, v in start.items() if torch.equal(last[k], v)]
    assert still == ["encoder.pos_embed"]  # epoch 2: every encoder parameter trains (the
    # sin-cos table is a buffer)


def test_knn_monitor_measures_the_starting_weights_first(runs):
    out, _ = runs
    start = [r for r in _records(out / "start") if r["split"] == "monitor"]
    cont = [r for r in _records(out / "continued") if r["split"] == "monitor"]
    assert [(r["epoch"], r["step"]) for r in cont] == [(0, 0), (1, 4), (2, 8)]
    assert [r["epoch"] for r in start] == [0, 1]
    # the continued run's first record is the start run's last weights, measured the same way
    assert cont[0]["knn_top1"] == start[-1]["knn_top1"]
    assert cont[1]["knn_top1"] == start[-1]["knn_top1"]  # the encoder did not move in warm-up


def test_train_records_carry_both_losses(runs):
    out, _ = runs
    train = [r for r in _records(out / "continued") if r["split"] == "train"]
    assert train and all({"mae_loss", "distill_loss"} <= r.keys() for r in train)
    for r in train:  # loss = mae_loss + 1.0 * distill_loss, averaged over the same batches
        assert r["loss"] == pytest.approx(r["mae_loss"] + r["distill_loss"], rel=1e-5)


def test_encoder_lr_scale_and_layer_decay_reach_the_groups():
    cfg = load_config("digits", ["model.arch=vit_micro_patch4", "pretrain.encoder_lr_scale=0.5",
                                 "pretrain.optim.layer_decay=0.5",
                                 "pretrain.decoder_warmup_epochs=1"])
    model = build_mae(cfg.model, cfg.data.img_size, 1)
    opt = build_optimizer(pretrain_groups(cfg, model), OptimConfig(), lr=0.0)
    depth = model.encoder.depth
    lr_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    for epoch, started in ((0.5, 0.0), (1.0, 1.0)):
        set_lr(opt, 1.0, epoch)
        for name, p in model.named_parameters():
            g = lr_of[id(p)]
            if not name.startswith("encoder."):
                assert g["lr"] == 1.0, name  # the decoder: never frozen, no decay
            elif name.startswith("encoder.blocks.1."):  # the last block: layer id = depth
                assert g["lr"] == pytest.approx(0.5 * 0.5 * started), name
            elif name.startswith("encoder.patch_embed"):  # layer id 0
                assert g["lr"] == pytest.approx(0.5 * 0.5 ** (depth + 1) * started), name


def test_distillation_target_is_the_teachers_token_at_the_same_position():
    cfg = load_config("digits", ["model.arch=vit_micro_patch4"])
    torch.manual_seed(0)
    mae = build_mae(cfg.model, cfg.data.img_size, 1, distill_weight=1.0)
    with torch.no_grad():  # a final norm far from the identity, as a pretrained one is
        mae.encoder.norm.weight.uniform_(0.5, 8.0)
        mae.encoder.norm.bias.normal_(0, 2.0)
    imgs = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        teacher = mae.encoder.forward_features(imgs)  # (B, 1+L, D): the encoder itself
        g = torch.Generator().manual_seed(1)  # nothing removed, the tokens in shuffled order
        loss, _, _ = mae(imgs, mask_ratio=0.0, generator=g, teacher_tokens=teacher)
        aligned = mae.parts["distill_loss"]
        # the same teacher with its patch tokens in another order: now the target is wrong
        shuffled = torch.cat([teacher[:, :1], teacher[:, 1:].flip(1)], dim=1)
        mae(imgs, mask_ratio=0.0, generator=torch.Generator().manual_seed(1),
            teacher_tokens=shuffled)
    # identity map, same encoder, LayerNorm of a LayerNorm: equal up to the norm's eps
    assert aligned < 1e-4 < mae.parts["distill_loss"]
    assert loss == pytest.approx(mae.parts["mae_loss"] + aligned, abs=1e-6)


def test_continued_options_are_checked():
    with pytest.raises(ConfigError, match="pretrain.distill_weight"):
        load_config("digits", ["pretrain.distill_weight=1.0"])  # no pretrain.init
    with pytest.raises(ConfigError, match="pretrain.decoder_warmup_epochs"):
        load_config("digits", ["pretrain.decoder_warmup_epochs=20", "pretrain.optim.epochs=20"])
    with pytest.raises(ConfigError, match="pretrain.encoder_lr_scale"):
        load_config("digits", ["pretrain.encoder_lr_scale=-1"])


def test_continued_run_stopped_in_warmup_resumes_bit_identical(runs, tmp_path, monkeypatch,
                                                                capsys):
    out, init = runs
    argv = _argv(tmp_path, "stopped", *CONTINUED, f"pretrain.init={init}", "run.keep_last=4")
    # SIGTERM in step 3 (epoch 0, the warm-up): ckpt-3 is written, exit 143
    stop_at_micro_batch(3, lambda: os.kill(os.getpid(), signal.SIGTERM), monkeypatch.setattr)
    code = main(argv)
    monkeypatch.undo()
    assert code == 128 + signal.SIGTERM
    code, text = resume(tmp_path / "stopped", capsys)
    assert code == 0, text
    assert_same_run(tmp_path / "stopped", out / "continued")

"""The ResNet-18 baseline (model.arch=resnet18): shapes for both stems and 1- or 3-channel
images, a gradient for every parameter, the ViT-only options refused naming their key, and
two fine-tuning steps through the CLI, evaluated and resumed, for classify and multilabel.
Its 3-D version (model.spatial_dims=3, torchvision's r3d_18): shapes per stage for 28^3 and
16^3 volumes, a gradient for every parameter, what volumes refuse."""

from __future__ import annotations

import json

import pytest
import torch
from cli.test_cli import run_cli
from data.test_voc import write_voc

from vitmae.cli import main
from vitmae.config import ConfigError, load_config
from vitmae.models import build_finetune_model
from vitmae.models.cnn import build_cnn

# ResNet-18 on the digits data: 1 channel at 16 px; 64 images in batches of 32: 2 steps/epoch
TINY = ["model.arch=resnet18", "model.cnn_stem=imagenet", "finetune.optim.layer_decay=1.0",
        "data.subset=64", "data.batch_size=32", "run.log_interval=1"]


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_logits_and_features_have_their_shapes(stem, in_chans):
    torch.manual_seed(0)
    model = build_cnn("resnet18", stem, in_chans, num_classes=7)
    x = torch.randn(2, in_chans, 32, 32)  # (B, C, H, W)
    assert model(x).shape == (2, 7)  # (B, K)
    assert model.encoder(x).shape == (2, model.num_features) == (2, 512)  # (B, F)
    assert model.encoder.conv1.in_channels == in_chans


@pytest.mark.parametrize("stem,grid", [("imagenet", 8), ("cifar", 32)])
def test_the_cifar_stem_keeps_the_resolution_of_small_images(stem, grid):
    model = build_cnn("resnet18", stem, 3, num_classes=10)
    seen = {}
    model.encoder.layer1.register_forward_hook(lambda m, i, out: seen.update(out=out))
    model(torch.randn(2, 3, 32, 32))
    assert seen["out"].shape == (2, 64, grid, grid)  # the first stage's input grid


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = build_cnn("resnet18", "cifar", 1, num_classes=3)
    model(torch.randn(4, 1, 16, 16)).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_the_finetune_model_splits_encoder_and_head():
    cfg = load_config("cifar10_resnet18")
    model, encoder, prefix = build_finetune_model(cfg, 3, 10)
    assert encoder is model.encoder and prefix == "encoder."
    assert {n for n, _ in model.named_parameters() if not n.startswith(prefix)} == \
        {"head.weight", "head.bias"}


@pytest.mark.parametrize("override,key", [
    ("task=segment", "task"),
    ("finetune.optim.layer_decay=0.75", "finetune.optim.layer_decay"),
    ("model.patch_size=4", "model.patch_size"),
    ("run.shards=2", "run.shards"),
    ("data.batch_size=1", "data.batch_size"),
    ("model.cnn_stem=tiny", "model.cnn_stem"),
])
def test_vit_only_options_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{key}: "):
        load_config("cifar10_resnet18", [override])


@pytest.mark.parametrize("key", ["finetune.pretrained", "pretrain.init"])
def test_pretrained_weights_are_refused(key, tmp_path):
    with pytest.raises(ConfigError, match=rf"^{key}: .*resnet18 trains from scratch"):
        load_config("cifar10_resnet18", [f"{key}={tmp_path}"])


def test_mae_pretraining_of_a_resnet_is_refused(tmp_path, capsys):
    argv = ["pretrain", "-c", "digits", *TINY, f"run.output_dir={tmp_path}"]
    assert main(argv) == 2
    assert "vitmae: error: model.arch: MAE pretraining" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before a run folder is made


def _val_epochs(run) -> list[int]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["epoch"] for r in records if r["split"] == "val"]


def test_finetune_evaluate_and_resume_through_the_cli(tmp_path):
    common = ["-c", "digits", *TINY, f"run.output_dir={tmp_path}", "run.name=cnn"]
    out = run_cli(["finetune", *common, "finetune.optim.epochs=1"])
    assert any("fine-tuning resnet18 (imagenet stem) for classify" in line for line in out)
    run = tmp_path / "cnn"
    result = json.loads(run_cli(["evaluate", "--checkpoint", str(run)])[-1])
    assert 0.0 <= result["top1"] <= 1.0 and result["n"] == 450
    run_cli(["finetune", "--resume", str(run), "finetune.optim.epochs=2"])
    assert _val_epochs(run) == [1, 2]  # epoch 1 kept, epoch 2 from its checkpoint
    result = json.loads(run_cli(["evaluate", "--checkpoint", str(run)])[-1])
    assert result["n"] == 450


def test_multilabel_finetune_and_evaluate(tmp_path):
    write_voc(tmp_path)
    run_cli(["finetune", "task=multilabel", "data.dataset=voc_cls", f"data.root={tmp_path}",
             "data.img_size=16", "data.batch_size=3", "data.train_split=mini_train",
             "data.val_split=mini_val", "model.arch=resnet18", "finetune.optim.epochs=1",
             f"run.output_dir={tmp_path / 'runs'}", "run.name=ml"])
    result = json.loads(run_cli(["evaluate", "--checkpoint", str(tmp_path / "runs" / "ml")])[-1])
    assert {"map", "per_label_acc", "n"} <= result.keys() and result["n"] == 2


@pytest.fixture(scope="module")
def resnet3d():
    """One r3d_18 with the 3x3x3 stride-1 stem for 1-channel volumes: building it takes ~1 s."""
    torch.manual_seed(0)
    return build_cnn("resnet18", "cifar", 1, num_classes=2, spatial_dims=3)


def _stage_grids(model, x: torch.Tensor) -> tuple[tuple[int, ...], torch.Tensor]:
    """-> (each stage's output shape, without B; the logits), in eval mode."""
    seen = []
    stages = [getattr(model.encoder, f"layer{i}") for i in range(1, 5)]
    hooks = [s.register_forward_hook(lambda m, i, out: seen.append(tuple(out.shape[1:])))
             for s in stages]
    model.eval()
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    return seen, logits


@pytest.mark.parametrize("side,grids", [(28, (28, 14, 7, 4)), (16, (16, 8, 4, 2))])
def test_a_volume_reaches_the_last_stage_at_its_side_over_8(resnet3d, side, grids):
    x = torch.randn(1, 1, side, side, side)  # (B, C, D, H, W)
    seen, logits = _stage_grids(resnet3d, x)
    widths = (64, 128, 256, 512)
    assert seen == [(c, g, g, g) for c, g in zip(widths, grids, strict=True)]
    assert logits.shape == (1, 2)  # (B, K)
    assert resnet3d.num_features == 512


def test_the_3d_imagenet_stem_is_torchvisions_video_stem():
    model = build_cnn("resnet18", "imagenet", 1, num_classes=2, spatial_dims=3)
    conv = model.encoder.stem[0]
    assert (conv.in_channels, conv.kernel_size, conv.stride) == (1, (3, 7, 7), (1, 2, 2))
    seen, _ = _stage_grids(model, torch.randn(1, 1, 16, 16, 16))
    assert seen[0] == (64, 16, 8, 8)  # depth kept, height and width halved


def test_every_parameter_of_the_3d_resnet_gets_a_gradient(resnet3d):
    resnet3d.train()
    resnet3d.zero_grad()
    resnet3d(torch.randn(2, 1, 8, 8, 8)).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in resnet3d.parameters())
    assert {n for n, _ in resnet3d.named_parameters() if not n.startswith("encoder.")} == \
        {"head.weight", "head.bias"}


@pytest.mark.parametrize("override,key,msg", [
    ("task=segment", "task", "3-D segmentation needs the ViT"),
    ("finetune.optim.layer_decay=0.75", "finetune.optim.layer_decay", "needs 1.0"),
    ("model.patch_size=4", "model.patch_size", "a ViT size"),
    ("finetune.pretrained=.", "finetune.pretrained", "trains from scratch"),
])
def test_volumes_refuse_what_a_3d_cnn_cannot_do_naming_the_key(override, key, msg):
    with pytest.raises(ConfigError, match=rf"^{key}: .*{msg}"):
        load_config("adrenal3d_resnet18", [override])


@pytest.mark.parametrize("preset", ["adrenal3d_resnet18", "vessel3d_resnet18"])
def test_the_3d_presets_are_the_vit_fine_tuning_runs_without_mae(preset):
    cfg, vit = load_config(preset), load_config(preset.removesuffix("_resnet18"))
    assert (cfg.model.arch, cfg.model.spatial_dims) == ("resnet18", 3)
    assert cfg.data == vit.data and cfg.task == vit.task
    assert cfg.finetune.test_split == vit.finetune.test_split
    assert cfg.finetune.optim.epochs == vit.finetune.optim.epochs

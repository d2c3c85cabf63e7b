"""Corruption augmentation (`finetune.corruption_aug`, `vitmae.train.corruption_aug`): with
p = 1 every training image is corrupted, with p = 0 none is touched, the draws come from the
step's generator; with a corruption size, the crop is corrupted as the stored image would
be (corrupted there, then resized); a run with it trains on other images than one without
and resumes bit-identical when stopped mid-epoch; bad values name their key."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from reliability.cli_runs import assert_same_run, resume
from reliability.self_stop import stop_at_micro_batch

from vitmae.cli import main
from vitmae.config import ConfigError, DataConfig, load_config
from vitmae.data import build_dataset
from vitmae.robust.attacks import from_pixels
from vitmae.robust.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from vitmae.runs.checkpoint import list_checkpoints
from vitmae.tasks import build_task
from vitmae.train.corruption_aug import CorruptionAugTask, draw_corruptions


@pytest.fixture(scope="module")
def batch():
    """32 digits at 16 px, normalised: (images (32, 1, 16, 16), labels (32,)), mean, std."""
    ds = build_dataset(DataConfig(), "train", train=False)
    x = torch.stack([ds[i][0] for i in range(32)])  # (32, 1, 16, 16)
    y = torch.tensor([int(ds[i][1]) for i in range(32)])  # (32,)
    return (x, y), ds.mean, ds.std


def _task(p: float, mean, std) -> CorruptionAugTask:
    return CorruptionAugTask(build_task("classify", num_classes=10), p, mean, std)


def test_p1_corrupts_every_image_and_p0_none(batch):
    (x, _), mean, std = batch
    out = _task(1.0, mean, std).corrupt(x, torch.Generator().manual_seed(0))
    changed = (out - x).flatten(1).abs().amax(1) > 1e-3  # (32,)
    assert changed.all() and out.shape == x.shape and out.dtype == x.dtype
    assert _task(0.0, mean, std).corrupt(x, torch.Generator().manual_seed(0)) is x


def test_unpicked_images_pass_bit_for_bit():
    """RGB noise normalised with CIFAR-10's statistics, where a round trip through pixels
    would change some bits."""
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    x = from_pixels(torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0)),
                    mean, std)  # (16, 3, 16, 16)
    picked = {i for i, *_ in draw_corruptions(len(x), 0.5, torch.Generator().manual_seed(3))}
    out = _task(0.5, mean, std).corrupt(x, torch.Generator().manual_seed(3))
    assert 0 < len(picked) < len(x)
    assert all(torch.equal(out[i], x[i]) for i in range(len(x)) if i not in picked)
    assert all(not torch.allclose(out[i], x[i], atol=1e-3) for i in picked)


def test_draws_come_from_the_step_generator(batch):
    (x, _), mean, std = batch
    task = _task(1.0, mean, std)

    def corrupted(step_seed: int, default_seed: int) -> torch.Tensor:
        torch.manual_seed(default_seed)
        return task.corrupt(x, torch.Generator().manual_seed(step_seed))

    assert torch.equal(corrupted(1, 0), corrupted(1, 99))
    assert not torch.equal(corrupted(1, 0), corrupted(2, 0))
    draws = draw_corruptions(1000, 1.0, torch.Generator())
    assert {name for _, name, _, _ in draws} == set(CORRUPTIONS)  # all 15 are drawn ...
    assert {severity for _, _, severity, _ in draws} == set(SEVERITIES)  # ... at all 5


def test_train_step_trains_on_the_corrupted_images(batch):
    (x, y), mean, std = batch
    task, seen = _task(1.0, mean, std), []
    task.task.train_step = lambda model, b, g: seen.append(b) or (torch.zeros(()), {})
    task.train_step(None, (x, y), torch.Generator().manual_seed(0))
    assert torch.equal(seen[0][0], task.corrupt(x, torch.Generator().manual_seed(0)))
    assert torch.equal(seen[0][1], y)


def _upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """(1, C, h, w) -> (1, C, size, size), bilinear as the data transforms resize."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


@pytest.mark.parametrize("name", ["gaussian_noise", "impulse_noise", "snow"])
def test_corruption_size_corrupts_the_crop_as_its_stored_image(name):
    """A 32 px image upsampled to 128 px: with size 32 the crop gets (within resampling
    error) what corrupting the 32 px image and then upsampling gives, as `vitmae robustness`
    builds its test images; at the crop's own size (128 px, the other parameter table,
    per-pixel noise) it gets something else."""
    x32 = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    crop = _upsample(x32, 128)  # (1, 3, 128, 128)
    stored = _upsample(corrupt(x32, name, 3, 7), 128)  # what the test set holds, resized
    at_32 = CorruptionAugTask(None, 1.0, (0.0,) * 3, (1.0,) * 3, size=32)
    at_crop = CorruptionAugTask(None, 1.0, (0.0,) * 3, (1.0,) * 3)
    err_32 = (at_32._corrupt_one(crop, name, 3, 7) - stored).abs().mean()
    err_crop = (at_crop._corrupt_one(crop, name, 3, 7) - stored).abs().mean()
    assert err_32 < 0.02 < err_crop
    assert err_32 < (stored - crop).abs().mean() / 3  # far nearer than the corruption's size


def test_corruption_size_of_the_crop_is_the_plain_corruption(batch):
    (x, _), mean, std = batch  # (32, 1, 16, 16)
    g = torch.Generator
    plain = _task(1.0, mean, std).corrupt(x, g().manual_seed(0))
    same = CorruptionAugTask(None, 1.0, mean, std, size=16).corrupt(x, g().manual_seed(0))
    assert torch.equal(plain, same)


# 128 digits / batch 32 = 4 steps per epoch, 2 epochs, a record every step
FINETUNE = ("-c", "digits", "model.arch=vit_micro_patch4", "data.subset=128",
            "data.batch_size=32", "finetune.optim.epochs=2", "finetune.optim.warmup_epochs=1",
            "model.drop_path=0.2", "run.log_interval=1", "run.threads=1")


def _argv(out, name: str, *extra: str) -> list[str]:
    return ["finetune", *FINETUNE, f"run.output_dir={out}", f"run.name={name}", *extra]


def _losses(run) -> list[float]:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]


def test_corruption_aug_changes_training_and_resumes_bit_identical(tmp_path, monkeypatch,
                                                                   capsys):
    assert main(_argv(tmp_path, "ref", "finetune.corruption_aug=1.0")) == 0
    assert main(_argv(tmp_path, "clean")) == 0
    ref, clean = _losses(tmp_path / "ref"), _losses(tmp_path / "clean")
    assert len(ref) == len(clean) == 8
    assert ref[0] != clean[0]  # the first step already sees other images
    stop_at_micro_batch(6, lambda: os.kill(os.getpid(), signal.SIGTERM), monkeypatch.setattr)
    code = main(_argv(tmp_path, "stopped", "finetune.corruption_aug=1.0"))
    monkeypatch.undo()
    run = tmp_path / "stopped"
    assert code == 128 + signal.SIGTERM
    assert list_checkpoints(run)[-1].name == "ckpt-000000006"
    code, out = resume(run, capsys, "finetune")
    assert code == 0, out
    assert_same_run(run, tmp_path / "ref")


@pytest.mark.parametrize("overrides", [
    ["finetune.corruption_aug=1.5"],
    ["finetune.corruption_aug=-0.1"],
    ["finetune.corruption_aug=0.5", "finetune.corruption_size=4"],
    ["finetune.corruption_aug=0.5", "finetune.corruption_size=64"],
    ["data.dataset=medmnist3d", "model.spatial_dims=3", "model.arch=vit_micro_patch4",
     "model.embed_dim=48", "model.decoder_embed_dim=48", "data.img_size=28",
     "pretrain.recon_every=0", "finetune.corruption_aug=0.5"],
])
def test_bad_corruption_aug_names_its_key(overrides):
    with pytest.raises(ConfigError, match=r"finetune\.corruption_(aug|size)"):
        load_config("digits", overrides)

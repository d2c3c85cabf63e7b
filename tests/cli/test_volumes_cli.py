"""End to end on tiny generated volumes: `vitmae pretrain -c adrenal3d`, then
`vitmae finetune -c adrenal3d finetune.pretrained=RUN`, 2 steps each, on a fake MedMNIST file;
the 3-D ResNet-18 peer, `vitmae finetune -c adrenal3d_resnet18`, 2 steps."""

from __future__ import annotations

import json

from volume_files import fake_medmnist3d

from vitmae.cli import main

from .test_cli import run_cli

# a micro 3-D model on 8^3 volumes: 8 patches of 4^3 voxels
TINY = ["model.patch_size=4", "model.embed_dim=48", "model.depth=1", "model.num_heads=2",
        "model.decoder_embed_dim=24", "model.decoder_depth=1", "model.decoder_num_heads=2",
        "data.img_size=8", "data.batch_size=6", "run.log_interval=1"]


def test_adrenal3d_pretrain_then_finetune(tmp_path):
    fake_medmnist3d(tmp_path / "data")
    common = ["-c", "adrenal3d", *TINY, f"data.root={tmp_path / 'data'}",
              f"run.output_dir={tmp_path / 'runs'}"]
    run_cli(["pretrain", *common, "pretrain.optim.epochs=1", "run.name=pre"])
    run_cli(["finetune", *common, "finetune.optim.epochs=1", "run.name=fin",
             f"finetune.pretrained={tmp_path / 'runs' / 'pre'}"])
    pre = [json.loads(s) for s in (tmp_path / "runs/pre/metrics.jsonl").read_text().splitlines()]
    assert sum(r["split"] == "train" for r in pre) == 2  # 12 training volumes, batches of 6
    fin = [json.loads(s) for s in (tmp_path / "runs/fin/metrics.jsonl").read_text().splitlines()]
    val = next(r for r in fin if r["split"] == "val")
    test = next(r for r in fin if r["split"] == "monitor")
    assert {"auc", "acc", "baseline_acc", "top1"} <= val.keys() and val["n"] == 6
    assert {"test_auc", "test_acc", "test_baseline_acc"} <= test.keys()
    assert 0.0 <= val["auc"] <= 1.0 and val["baseline_acc"] == 0.5


def _records(run) -> list[dict]:
    return [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_3d_resnet18_peer_logs_val_and_test_auc(tmp_path):
    fake_medmnist3d(tmp_path / "data")
    out = run_cli(["finetune", "-c", "adrenal3d_resnet18", "finetune.pretrained=null",
                   "data.img_size=8", "data.batch_size=6", "run.log_interval=1",
                   "finetune.optim.epochs=1", f"data.root={tmp_path / 'data'}",
                   f"run.output_dir={tmp_path / 'runs'}", "run.name=cnn"])
    assert any("resnet18 3-D (r3d_18, cifar stem)" in line for line in out)
    records = _records(tmp_path / "runs/cnn")
    assert sum(r["split"] == "train" for r in records) == 2  # 12 training volumes, batches of 6
    val = next(r for r in records if r["split"] == "val")
    test = next(r for r in records if r["split"] == "monitor")
    assert 0.0 <= val["auc"] <= 1.0 and val["n"] == 6
    assert 0.0 <= test["test_auc"] <= 1.0


def test_a_2d_cnn_on_volumes_is_refused_naming_the_key(tmp_path, capsys):
    fake_medmnist3d(tmp_path / "data")
    argv = ["finetune", "-c", "adrenal3d_resnet18", "model.spatial_dims=2",
            f"data.root={tmp_path / 'data'}", f"run.output_dir={tmp_path / 'runs'}"]
    assert main(argv) == 2
    assert "vitmae: error: model.spatial_dims: data.dataset=medmnist3d has 3-D items" in \
        capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before a run folder is made


def test_3d_pretraining_draws_slices_and_visualize_too(tmp_path):
    fake_medmnist3d(tmp_path / "data")
    common = ["-c", "adrenal3d", *TINY, f"data.root={tmp_path / 'data'}",
              f"run.output_dir={tmp_path / 'runs'}"]
    run_cli(["pretrain", *common, "pretrain.optim.epochs=1", "pretrain.recon_every=1",
             "run.name=pre"])
    assert (tmp_path / "runs/pre/recon/epoch-001.png").read_bytes().startswith(b"\x89PNG")
    run_cli(["visualize", "--checkpoint", str(tmp_path / "runs/pre"),
             "--out", str(tmp_path / "v.png")])
    assert (tmp_path / "v.png").read_bytes().startswith(b"\x89PNG")

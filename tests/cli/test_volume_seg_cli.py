"""3-D segmentation end to end on generated scans (a bright ball, class 1, and a dark cube,
class 2, in noise): fine-tuning learns past the all-background baseline, `evaluate`
reproduces the run's figures, `predict` writes masks on the scans' own grid that agree with
the evaluation's, by torch and by ONNX; MAE pretraining on the same scans feeds fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from volume_files import seg_scans

from vitmae.cli import main

from .test_cli import run_cli

nib = pytest.importorskip("nibabel")
SHAPES = [(12, 10, 14), (9, 13, 11), (14, 14, 8), (10, 10, 10), (12, 12, 12), (11, 9, 13)]
# a micro 3-D ViT on 8^3 cubes of 2^3-voxel patches, a schedule that learns in 20 steps
TINY = ["data.img_size=8", "model.patch_size=2", "model.embed_dim=48", "model.depth=2",
        "model.num_heads=2", "model.decoder_embed_dim=24", "model.decoder_depth=1",
        "model.decoder_num_heads=2", "model.drop_path=0", "data.batch_size=6",
        "data.val_split=val", "data.volume.intensity_range=[-200,300]", "run.log_interval=1"]


def records(run: Path) -> list[dict]:
    return [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("vseg")
    seg_scans(root / "data", SHAPES)
    common = ["-c", "volume_seg_folder", *TINY, f"data.root={root / 'data'}",
              f"run.output_dir={root / 'runs'}"]
    run_cli(["finetune", *common, "finetune.pretrained=null", "finetune.optim.epochs=20",
             "finetune.optim.lr=3e-3", "finetune.optim.warmup_epochs=2",
             "finetune.optim.layer_decay=1.0", "run.eval_interval=20", "run.name=seg"])
    return {"root": root, "common": common, "run": root / "runs" / "seg"}


def test_fine_tuning_learns_past_the_background_baseline(run):
    val = [r for r in records(run["run"]) if r["split"] == "val"][-1]
    assert val["n"] == 6 and {"miou", "mdice", "per_class_dice", "per_class_iou"} <= val.keys()
    assert val["miou"] > val["baseline_miou"] + 0.15
    assert val["per_class_iou"]["1"] > 0.5  # the ball is found


def test_evaluate_reproduces_the_run_and_predict_agrees_with_it(run, tmp_path):
    out = run_cli(["evaluate", "--checkpoint", str(run["run"]),
                   "--save-predictions", str(tmp_path / "eval")])
    result = json.loads(out[-1])
    val = [r for r in records(run["run"]) if r["split"] == "val"][-1]
    assert result["miou"] == pytest.approx(val["miou"], abs=1e-12)
    images = run["root"] / "data/val/images"
    lines = run_cli(["predict", "--checkpoint", str(run["run"]), str(images),
                     "--out", str(tmp_path / "pred")])
    recs = [json.loads(s) for s in lines if s.startswith("{")]
    assert len(recs) == 6
    for i, shape in enumerate(SHAPES):
        scan = nib.load(images / f"scan{i}.nii.gz")
        mask = nib.load(tmp_path / "pred" / f"scan{i}.nii.gz")
        assert mask.shape == shape and np.allclose(mask.affine, scan.affine)
        # 1 mm scans, no resampling: the same labels as the evaluation's pass
        assert np.array_equal(np.asarray(mask.dataobj),
                              np.load(tmp_path / "eval" / f"scan{i}.npy"))
    fractions = {c["index"]: c["fraction"] for c in recs[0]["classes"]}
    assert sum(fractions.values()) == pytest.approx(1.0)


def test_the_onnx_export_predicts_the_same_masks(run, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "seg.onnx"
    run_cli(["export", str(run["run"]), "--to", "onnx", str(onnx)])
    images = run["root"] / "data/val/images"
    for source, out in ((run["run"], "torch"), (onnx, "onnx")):
        run_cli(["predict", "--checkpoint", str(source), str(images), "--out",
                 str(tmp_path / out)])
    for i in range(len(SHAPES)):
        a = np.asarray(nib.load(tmp_path / "torch" / f"scan{i}.nii.gz").dataobj)
        b = np.asarray(nib.load(tmp_path / "onnx" / f"scan{i}.nii.gz").dataobj)
        assert (a == b).mean() > 0.999  # float differences may flip a tie


def test_mae_pretraining_on_the_scans_feeds_fine_tuning(run):
    common = run["common"]
    run_cli(["pretrain", *common, "pretrain.optim.epochs=1", "run.name=mae"])
    pre = records(run["root"] / "runs/mae")
    assert any(r["split"] == "val" and r["val_loss"] > 0 for r in pre)  # centre cubes
    out = run_cli(["finetune", *common, "finetune.optim.epochs=1", "run.name=from_mae",
                   f"finetune.pretrained={run['root'] / 'runs/mae'}"])
    assert any("loaded the encoder" in s and "new: -" in s for s in out)


def test_visualize_draws_a_slice_and_robustness_refuses_volumes(run, tmp_path, capsys):
    run_cli(["visualize", "--checkpoint", str(run["run"]), "--out", str(tmp_path / "v.png")])
    assert (tmp_path / "v.png").stat().st_size > 0
    assert main(["robustness", "--checkpoint", str(run["run"])]) != 0
    assert "volumes" in capsys.readouterr().err


def test_predict_resamples_to_the_runs_spacing_and_back_to_the_scans_grid(run, tmp_path):
    # scans stored at 2 x 1 x 0.5 mm for a model of 1 mm voxels: segmented at 1 mm, the mask
    # returned on the scan's own (6, 10, 20) grid, where the ball lies
    import dataclasses

    from vitmae.infer.model import open_model
    from vitmae.infer.predict_volumes import segment_scan

    seg_scans(tmp_path, [(6, 10, 20)], spacing=(2.0, 1.0, 0.5), seed=3)
    model = open_model(run["run"])
    model.preprocess = dataclasses.replace(model.preprocess, spacing=(1.0, 1.0, 1.0))
    scan = tmp_path / "val/images/scan0.nii.gz"
    labels, vol = segment_scan(model, scan)
    truth = np.asarray(nib.load(tmp_path / "val/masks/scan0.nii.gz").dataobj)
    assert labels.shape == vol.shape == truth.shape == (6, 10, 20)
    ball = truth == 1
    assert (labels.numpy()[ball] == 1).mean() > 0.5 and (labels.numpy()[~ball] != 1).mean() > 0.9

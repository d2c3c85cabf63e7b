"""End to end through the CLI on tiny data: MAE pretraining -> segmentation fine-tuning ->
evaluate (JSON line) -> visualize (PNG); VOC segmentation and multi-label on a tiny VOC."""

import json

import pytest
import torch
from data.test_mnist import write_mnist
from data.test_voc import SIZES, write_voc

from cli.test_cli import PNG, run_cli
from vitmae.data.voc import read_mask

TINY = ["model.arch=vit_micro_patch4", "model.decoder_embed_dim=32", "model.decoder_depth=1",
        "model.decoder_num_heads=2", "run.log_interval=1"]
SEG_KEYS = {"miou", "pixel_acc", "mean_class_acc", "per_class_iou", "n", "baseline_miou",
            "baseline_pixel_acc"}


def test_mnist_seg_pretrain_finetune_evaluate_visualize(tmp_path):
    write_mnist(tmp_path / "data")
    common = ["-c", "mnist_seg", *TINY, f"data.root={tmp_path / 'data'}", "data.img_size=16",
              "data.batch_size=10", f"run.output_dir={tmp_path}"]
    run_cli(["pretrain", *common, "pretrain.optim.epochs=1", "run.name=pre"])
    run_cli(["finetune", *common, "finetune.optim.epochs=1", "run.name=fin",
             f"finetune.pretrained={tmp_path / 'pre'}"])
    result = json.loads(run_cli(["evaluate", "--checkpoint", str(tmp_path / "fin")])[-1])
    assert SEG_KEYS <= result.keys() and result["n"] == 10
    assert len(result["per_class_iou"]) == 11 and 0.0 <= result["miou"] <= 1.0
    assert (tmp_path / "fin" / "eval" / "metrics.json").is_file()
    out = tmp_path / "seg.png"
    run_cli(["visualize", "--checkpoint", str(tmp_path / "fin"), "--out", str(out)])
    assert out.read_bytes()[:8] == PNG


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    write_voc(root)
    return root


def voc_args(root, dataset: str, task: str) -> list[str]:
    return [*TINY, f"task={task}", f"data.dataset={dataset}", f"data.root={root}",
            "data.img_size=16", "data.batch_size=3", "data.train_split=mini_train",
            "data.val_split=mini_val", f"run.output_dir={root / 'runs'}",
            "model.seg_head=pup", "finetune.optim.epochs=1", f"run.name={dataset}"]


def test_voc_segmentation_at_original_size_and_palette_predictions(voc_root):
    args = voc_args(voc_root, "voc_seg", "segment")
    run_cli(["finetune", *args])
    run = voc_root / "runs" / "voc_seg"
    lines = run_cli(["evaluate", "--checkpoint", str(run), "--save-predictions",
                     str(voc_root / "pred")])
    result = json.loads(lines[-1])
    assert SEG_KEYS <= result.keys() and result["n"] == 2 and len(result["per_class_iou"]) == 21
    run_cli(["visualize", "--checkpoint", str(run), "--out", str(run / "v.png")])
    assert (run / "v.png").read_bytes()[:8] == PNG
    paths = sorted((voc_root / "pred").glob("*.png"))
    assert [p.stem for p in paths] == ["2007_000002", "2007_000004"]
    for p in paths:  # VOC format: palette PNGs at the original size, values are classes
        mask = read_mask(p)
        assert tuple(mask.shape) == SIZES[p.stem] and int(mask.max()) <= 20


def test_voc_multilabel_reports_map(voc_root):
    run_cli(["finetune", *voc_args(voc_root, "voc_cls", "multilabel")])
    result = json.loads(run_cli(["evaluate", "--checkpoint",
                                 str(voc_root / "runs" / "voc_cls")])[-1])
    assert {"map", "per_label_acc", "exact_match", "n", "baseline_per_label_acc"} <= \
        result.keys()
    assert result["n"] == 2 and result["map_classes"] == 3  # dog, person (XML), class 4
    assert torch.isfinite(torch.tensor(result["map"]))

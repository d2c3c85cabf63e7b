"""benchmarks/label_efficiency.py --smoke: the whole grid on micro models (2 steps per run)
writes its table, one results line per run and the picture."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from vitmae.config import load_config
from vitmae.data import build_dataset

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def study():
    """benchmarks/label_efficiency.py as a module (the benchmarks folder is not a package)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    return importlib.import_module("label_efficiency")


def test_smoke_grid_writes_the_table_the_results_and_the_picture(study, tmp_path):
    table = study.main(["--smoke", "--out", str(tmp_path)])
    assert [(r["init"], r["fraction"]) for r in table] == [
        (i, f) for i in study.INITS for f in (0.01, 0.1, 1.0)]
    assert all(r["rc"] == 0 and 0.0 <= r["top1"] <= 1.0 for r in table)
    assert json.loads((tmp_path / "label_efficiency.json").read_text()) == table
    lines = [json.loads(x) for x in (tmp_path / "label_efficiency.jsonl").read_text().split("\n")
             if x]
    assert len(lines) == 9 and all(x["command"][:2] == ["vitmae", "finetune"] for x in lines)
    assert "finetune.pretrained=null" in lines[0]["command"]
    assert (tmp_path / "plot.png").read_bytes().startswith(PNG)


def test_every_fraction_gets_about_the_same_number_of_steps(study):
    over = [*study.SMOKE, "data.batch_size=8", "finetune.pretrained=null"]
    for fraction in (0.1, 0.5, 1.0):
        sched = study.schedule("cifar10", over, fraction, steps=12)
        cfg = load_config("cifar10", [*over, *sched])
        n = len(build_dataset(cfg.data, "train", train=True, labelled=True))
        per_epoch = n // cfg.data.batch_size
        o = cfg.finetune.optim
        assert abs(o.epochs * per_epoch - 12) <= per_epoch / 2
        assert cfg.run.eval_interval == o.epochs  # the last epoch only
        assert o.warmup_epochs == pytest.approx(o.epochs / 10)  # 1 of 10


def test_the_cnn_start_runs_its_own_preset_and_the_picture_keeps_earlier_runs(study, tmp_path):
    results = tmp_path / "label_efficiency.jsonl"
    earlier = {"init": "scratch", "fraction": 0.5, "top1": 0.25, "rc": 0, "run": "r"}
    results.write_text(json.dumps({**earlier, "top1": 0.1}) + "\n" + json.dumps(earlier) + "\n")
    table = study.main(["--smoke", "--out", str(tmp_path), "--inits", study.CNN,
                        "--fractions", "1.0"])
    assert [(r["init"], r["rc"]) for r in table] == [(study.CNN, 0)]
    command = json.loads(results.read_text().splitlines()[-1])["command"]
    assert command[2:4] == ["-c", "cifar10_resnet18"]
    assert not any(c.startswith("model.arch=") for c in command)  # the smoke keeps ResNet-18
    # the picture is drawn from every start in the results file, the last run of each cell
    assert [(r["init"], r["top1"]) for r in study.latest(results)] == [
        ("scratch", 0.25), (study.CNN, table[0]["top1"])]


def test_an_unknown_start_is_refused_with_the_known_ones(study, capsys):
    with pytest.raises(SystemExit):
        study.parse_args(["--inits", "scratch,vgg"])
    known = "scratch, mae, imagenet21k, imagenet21k+mae, resnet18"
    assert f"unknown ['vgg'] (known: {known})" in capsys.readouterr().err


def test_the_imagenet_mae_start_fine_tunes_its_run_with_the_imagenet_preset(study, tmp_path):
    mae = study.smoke_mae(tmp_path / "runs")  # stands for an MAE run from the ImageNet weights
    table = study.main(["--smoke", "--out", str(tmp_path), "--inits", "imagenet21k+mae",
                        "--imagenet-mae", mae, "--weights", "unused", "--fractions", "1.0"])
    assert [(r["init"], r["rc"]) for r in table] == [("imagenet21k+mae", 0)]
    command = json.loads((tmp_path / "label_efficiency.jsonl").read_text())["command"]
    assert command[2:4] == ["-c", "cifar10_vit_tiny"]
    assert f"finetune.pretrained={mae}" in command


def test_a_start_without_its_weights_names_the_missing_option(study, tmp_path):
    with pytest.raises(SystemExit, match="--inits imagenet21k\\+mae: needs --imagenet-mae"):
        study.main(["--out", str(tmp_path), "--inits", "imagenet21k+mae", "--weights", "w"])

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
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
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

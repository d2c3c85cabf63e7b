"""The TensorBoard sink: the numbers and pictures of metrics.jsonl records, as events."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from vitmae.config import ConfigError, load_config
from vitmae.runs.folder import RunDir
from vitmae.runs.sinks import TensorBoardSink, require_tensorboard
from vitmae.train.runner import run_pretrain


def _events(folder):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_numbers_become_scalars_and_named_pictures_images(tmp_path):
    Image.fromarray(np.full((6, 8, 3), 200, np.uint8)).save(tmp_path / "grid.png")
    with RunDir(tmp_path, [TensorBoardSink(tmp_path)]) as run:
        run.log({"epoch": 0, "step": 1, "split": "train", "loss": 0.5, "lr": 1e-3, "n": 3,
                 "finite": True, "per_class": {"0": 1.0}})
        run.log({"epoch": 1, "step": 2, "split": "monitor", "knn_top1": 0.25,
                 "grid_png": "grid.png"})
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2
    events = _events(tmp_path)
    assert sorted(events.Tags()["scalars"]) == ["monitor/knn_top1", "train/loss", "train/lr"]
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 0.5)]
    (image,) = events.Images("monitor/grid")
    assert (image.step, image.width, image.height) == (2, 8, 6)


def test_a_resumed_run_replaces_the_events_after_its_checkpoint(tmp_path):
    with RunDir(tmp_path, [TensorBoardSink(tmp_path)]) as run:  # killed after step 4
        for step in (1, 2, 3, 4):
            run.log({"epoch": 0, "step": step, "split": "train", "loss": float(step)})
    with RunDir(tmp_path, [TensorBoardSink(tmp_path)]) as run:  # resumed from step 2
        for step in (3, 4, 5):
            run.log({"epoch": 0, "step": step, "split": "train", "loss": 10.0 * step})
    got = [(e.step, e.value) for e in _events(tmp_path).Scalars("train/loss")]
    assert got == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0), (5, 50.0)]


def test_missing_tensorboard_is_a_config_error_before_any_run_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # the import fails
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        require_tensorboard()
    cfg = load_config("digits", ["model.arch=vit_micro_patch4", "data.subset=64",
                                 "pretrain.optim.epochs=1", "run.tensorboard=true",
                                 f"run.output_dir={tmp_path}", "run.name=tb"])
    with pytest.raises(ConfigError, match="run.tensorboard"):
        run_pretrain(cfg, log=lambda *_: None)
    assert not (tmp_path / "tb").exists()

"""A non-finite loss stops the run (exit 3) with a message naming the step, the
lr and the last good checkpoint; no checkpoint of non-finite weights is ever written."""

from __future__ import annotations

import re

import torch

from vitmae.cli import main
from vitmae.runs.checkpoint import list_checkpoints, read_weights, verify_checkpoint
from vitmae.tasks.pretrain import PretrainTask

from .cli_runs import pretrain_argv


def _checkpoints_are_finite(run) -> None:
    for ckpt in list_checkpoints(run):
        verify_checkpoint(ckpt)
        assert all(torch.isfinite(t).all() for t in read_weights(ckpt).values()), ckpt


def test_nan_loss_names_step_lr_and_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    calls = []
    train_step = PretrainTask.train_step

    # steps 0..5 are fine, ckpt-4 is the last save
    def nan_at_step_6(self, model, batch, generator=None):
        calls.append(1)
        loss, metrics = train_step(self, model, batch, generator)
        return (loss * float("nan") if len(calls) == 7 else loss), metrics

    monkeypatch.setattr(PretrainTask, "train_step", nan_at_step_6)
    code = main(pretrain_argv(tmp_path, "nan"))
    err = capsys.readouterr().err
    run = tmp_path / "nan"
    assert code == 3, err
    assert re.search(r"diverged: loss is nan at step 6 \(epoch 1, batch 2\), lr [0-9.e+-]+; "
                     r"last good checkpoint: \S+ckpt-000000006", err), err
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-000000004", "ckpt-000000006"]
    _checkpoints_are_finite(run)


def test_huge_lr_stops_with_exit_3_and_no_nan_checkpoint(tmp_path, capsys):
    code = main(pretrain_argv(tmp_path, "lr", "pretrain.optim.lr=1e30",
                              "pretrain.optim.warmup_epochs=0", "run.ckpt_interval=1"))
    err = capsys.readouterr().err
    assert code == 3, err
    assert re.search(r"diverged: loss is (nan|inf) at step \d+ .*, lr [0-9.]+e\+(29|30); "
                     r"last good checkpoint: ", err), err
    _checkpoints_are_finite(tmp_path / "lr")


def test_non_finite_weights_after_a_finite_loss_are_not_saved(tmp_path, monkeypatch, capsys):
    """A step can turn weights into NaN while its loss was finite; the save before the next
    forward pass must refuse them."""
    calls = []
    train_step = PretrainTask.train_step

    def poison_weights_at_step_3(self, model, batch, generator=None):
        calls.append(1)
        out = train_step(self, model, batch, generator)
        if len(calls) == 4:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(PretrainTask, "train_step", poison_weights_at_step_3)
    code = main(pretrain_argv(tmp_path, "w"))
    err = capsys.readouterr().err
    assert code == 3, err
    assert "is not finite after step 4" in err and "no checkpoint written" in err
    assert "last good checkpoint: " in err and "ckpt-000000002" in err
    assert [p.name for p in list_checkpoints(tmp_path / "w")] == ["ckpt-000000002"]
    _checkpoints_are_finite(tmp_path / "w")

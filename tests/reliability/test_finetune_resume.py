"""A fine-tuning run stopped mid-epoch and resumed ends bit-identical to an uninterrupted one,
with every random or per-group option of fine-tuning on: drop-path and patch dropout (random
draws that the checkpoint's RNG states must replay), layer-wise lr decay and a head lr
multiplier (per-group lr scales that the optimizer state must keep), label smoothing."""

from __future__ import annotations

import os
import signal

from vitmae.cli import main
from vitmae.runs.checkpoint import list_checkpoints

from .cli_runs import assert_same_run, resume
from .self_stop import stop_at_micro_batch

# 128 digits / batch 32 = 4 steps per epoch, 2 epochs; records every 3 steps, so the stop at
# step 5 falls between two records (the running means are in the checkpoint too)
FINETUNE = ("-c", "digits", "model.arch=vit_micro_patch4", "data.subset=128",
            "data.batch_size=32", "finetune.optim.epochs=2", "finetune.optim.warmup_epochs=1",
            "model.drop_path=0.2", "model.patch_drop=0.25", "finetune.optim.layer_decay=0.75",
            "finetune.head_lr_mult=5", "finetune.label_smoothing=0.1", "run.log_interval=3",
            "run.threads=1")


def finetune_argv(out, name: str) -> list[str]:
    return ["finetune", *FINETUNE, f"run.output_dir={out}", f"run.name={name}"]


def test_finetune_stopped_mid_epoch_resumes_bit_identical(tmp_path, monkeypatch, capsys):
    assert main(finetune_argv(tmp_path, "ref")) == 0
    # SIGTERM in step 5 (epoch 1, batch 1): the step finishes, ckpt-5 is written, exit 143
    stop_at_micro_batch(5, lambda: os.kill(os.getpid(), signal.SIGTERM), monkeypatch.setattr)
    code = main(finetune_argv(tmp_path, "stopped"))
    monkeypatch.undo()
    run = tmp_path / "stopped"
    assert code == 128 + signal.SIGTERM
    assert list_checkpoints(run)[-1].name == "ckpt-000000005"
    code, out = resume(run, capsys, "finetune")
    assert code == 0, out
    assert "at epoch 1, batch 1, step 5" in out
    assert_same_run(run, tmp_path / "ref")

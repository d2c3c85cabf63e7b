"""What `run_finetune` / `run_pretrain` hand to the engine: a linear probe trains the head
alone; the lr follows blr * effective batch / 256 with every DDP process in the effective
batch; the task gets the configured label smoothing and class weights.

The engine's `fit` is wrapped here to see the model before training and the arguments it
gets; ranks are simulated by setting `vitmae.distributed`'s world size (no processes).
"""

from __future__ import annotations

import pytest
import torch

import vitmae.distributed
import vitmae.train.runner
from vitmae.config import ConfigError, load_config
from vitmae.data import build_dataset
from vitmae.runs.checkpoint import read_weights
from vitmae.train.runner import run_finetune, run_pretrain

TINY = ["model.arch=vit_micro_patch4", "model.decoder_embed_dim=32", "model.decoder_depth=1",
        "model.decoder_num_heads=2", "data.subset=64", "data.batch_size=16",
        "run.threads=1", "run.log_interval=1"]


class Stop(Exception):
    """Raised by the wrapped fit when the test has seen what it needs."""


@pytest.fixture
def fit_calls(monkeypatch):
    """Wraps the runner's `fit`: each call appends {"before": the model's weights, "args",
    "kwargs"}; with calls.stop = True it raises Stop instead of training."""
    real_fit = vitmae.train.runner.fit

    class Calls(list):
        stop = False

    calls = Calls()

    def recording_fit(model, *args, **kwargs):
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        calls.append({"before": before, "args": args, "kwargs": kwargs})
        if calls.stop:
            raise Stop
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(vitmae.train.runner, "fit", recording_fit)
    return calls


def _cfg(tmp_path, name: str, *overrides: str):
    return load_config("digits", [*TINY, f"run.output_dir={tmp_path}", f"run.name={name}",
                                  *overrides])


def test_a_linear_probe_changes_the_head_only(tmp_path, fit_calls):
    run = run_finetune(_cfg(tmp_path, "probe", "finetune.linear_probe=true",
                            "finetune.optim.epochs=1", "finetune.optim.warmup_epochs=0"))
    before, after = fit_calls[0]["before"], read_weights(run)
    assert before.keys() == after.keys() and any(k.startswith("head.") for k in before)
    for key in before:
        changed = not torch.equal(before[key], after[key])
        assert changed == key.startswith("head."), key


def test_full_fine_tuning_changes_the_encoder_too(tmp_path, fit_calls):
    """The counterpart of the linear probe: the same run without it moves encoder weights."""
    run = run_finetune(_cfg(tmp_path, "full", "finetune.optim.epochs=1",
                            "finetune.optim.warmup_epochs=0", "model.drop_path=0"))
    before, after = fit_calls[0]["before"], read_weights(run)
    assert not torch.equal(before["blocks.0.attn.qkv.weight"], after["blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_the_lr_scales_with_the_effective_batch_over_all_ranks(tmp_path, fit_calls,
                                                               monkeypatch, stage):
    """base lr = blr * batch_size * accum_iter * world_size / 256 (MAE's rule)."""
    fit_calls.stop = True
    run = {"pretrain": run_pretrain, "finetune": run_finetune}[stage]
    lrs = {}
    for world in (1, 4):
        monkeypatch.setattr(vitmae.distributed, "world_size", lambda w=world: w)
        with pytest.raises(Stop):
            run(_cfg(tmp_path, f"{stage}{world}", f"{stage}.optim.blr=0.002",
                     f"{stage}.optim.accum_iter=2"))
        args = fit_calls[-1]["args"]  # (task, optimizer, base_lr, ...)
        lrs[world] = args[2]
    assert lrs[1] == pytest.approx(0.002 * 16 * 2 / 256)
    assert lrs[4] == pytest.approx(0.002 * 16 * 2 * 4 / 256)


def test_the_task_gets_the_label_smoothing(tmp_path, fit_calls):
    fit_calls.stop = True
    with pytest.raises(Stop):
        run_finetune(_cfg(tmp_path, "smooth", "finetune.label_smoothing=0.3"))
    assert fit_calls[0]["args"][0].label_smoothing == 0.3


def test_balanced_class_weights_come_from_the_training_labels(tmp_path, fit_calls):
    fit_calls.stop = True
    with pytest.raises(Stop):
        run_finetune(_cfg(tmp_path, "weighted", "finetune.class_weights=balanced"))
    task = fit_calls[0]["args"][0]
    train = build_dataset(_cfg(tmp_path, "x").data, "train", train=True)  # data.subset applies
    counts = torch.bincount(torch.tensor([int(train[i][1]) for i in range(len(train))]),
                            minlength=10)  # the 64 digits of data.subset
    k = int((counts > 0).sum())
    torch.testing.assert_close(task.class_weights * counts,
                               torch.full((10,), 64 / k).where(counts > 0, torch.tensor(0.)))
    assert task.class_weights.std() > 0  # the subset is not balanced: the test can tell
    with pytest.raises(Stop):
        run_finetune(_cfg(tmp_path, "plain"))
    assert fit_calls[1]["args"][0].class_weights is None


def test_class_weights_are_refused_without_single_labels():
    with pytest.raises(ConfigError, match=r"finetune\.class_weights"):
        load_config("voc_seg", ["finetune.class_weights=balanced"])

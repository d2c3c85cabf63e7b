"""finetune.best_by: the epoch with the best validation metric is the one in RUN/best (as
MedMNIST's protocol picks it from the records), its weights are that epoch's checkpoint, the
folder opens as a checkpoint, and the best so far survives a resume."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from cli.test_cli import run_cli
from safetensors.torch import load_file

from vitmae.errors import UsageError
from vitmae.runs.checkpoint import list_checkpoints, read_weights
from vitmae.runs.folder import RunDir, metric_records
from vitmae.train.best import BEST, RECORD, BestEpoch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from best_epoch import best_epoch  # noqa: E402  (MedMNIST's rule on the records, a tool)

TINY = ["model.arch=vit_micro_patch4", "model.decoder_embed_dim=32", "model.decoder_depth=1",
        "model.decoder_num_heads=2", "data.img_size=16", "data.subset=96", "data.batch_size=16",
        "run.log_interval=1", "run.threads=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("best")
    # 6 epochs at a high lr: the validation top-1 goes up and down, so the best is not the last
    run_cli(["finetune", "-c", "digits", *TINY, "finetune.optim.epochs=6",
             "finetune.optim.lr=0.003", "finetune.optim.warmup_epochs=0",
             "finetune.optim.schedule=constant", "finetune.test_split=test",
             "finetune.best_by=top1", "run.keep_last=10", f"run.output_dir={out}",
             "run.name=r"])
    return out / "r"


def test_the_kept_epoch_is_the_protocols_choice_with_its_figures(run):
    records = metric_records(run, ignore=())
    want = best_epoch(records, by="top1")  # first epoch with the highest val top1
    kept = json.loads((run / BEST / RECORD).read_text())
    assert kept["epoch"] == want["epoch"] and kept["by"] == "top1"
    assert kept["val_top1"] == want["val_top1"] and kept["test_top1"] == want["test_top1"]
    vals = [r["top1"] for r in records if r.get("split") == "val"]
    assert len(vals) == 6 and len(set(vals)) > 1  # the figures moved: a real choice


def test_the_kept_weights_are_that_epochs_checkpoint(run):
    kept = json.loads((run / BEST / RECORD).read_text())
    ckpt = next(c for c in list_checkpoints(run) if c.name.endswith(f"{kept['step']:09d}"))
    best = load_file(run / BEST / "model.safetensors")
    want = read_weights(ckpt)
    assert best.keys() == want.keys()
    assert all(torch.equal(best[k], want[k]) for k in want)
    if kept["epoch"] != 6:  # not the last epoch: the weights the run ended with differ
        last = read_weights(list_checkpoints(run)[-1])
        assert any(not torch.equal(best[k], last[k]) for k in want)


def test_the_best_folder_opens_as_a_checkpoint(run):
    kept = json.loads((run / BEST / RECORD).read_text())
    result = json.loads(run_cli(["evaluate", "--checkpoint", str(run / BEST)])[-1])
    assert result["top1"] == pytest.approx(kept["val_top1"], abs=1e-9)


def test_best_so_far_is_read_back_from_the_records_and_nan_never_wins(tmp_path):
    run = RunDir(tmp_path)
    for epoch, auc in ((1, 0.7), (2, 0.9), (3, float("nan"))):
        run.log({"epoch": epoch, "split": "val", "auc": auc})
    run.log({"epoch": 3, "split": "monitor", "test_auc": 0.99})  # not a validation figure
    best = BestEpoch(run, "auc")
    assert best.value == 0.9
    model = torch.nn.Linear(2, 1)
    assert not best.validated(4, 40, {"auc": 0.9}, model)  # a tie keeps the first epoch
    assert not best.validated(5, 50, {"auc": math.nan}, model)
    assert not (tmp_path / BEST).exists()
    assert best.validated(6, 60, {"auc": 0.95, "acc": 0.8, "per_class": {}}, model)
    best.monitored(6, {"test_auc": 0.91})
    best.monitored(5, {"test_auc": 0.2})  # another epoch's: ignored
    kept = json.loads((tmp_path / BEST / RECORD).read_text())
    assert kept == {"epoch": 6, "step": 60, "by": "auc", "val_auc": 0.95, "val_acc": 0.8,
                    "test_auc": 0.91}
    with pytest.raises(UsageError, match=r"finetune\.best_by=miou.*acc, auc"):
        BestEpoch(run, "miou").validated(7, 70, {"auc": 0.5, "acc": 0.5}, model)

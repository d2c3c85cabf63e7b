"""tools/best_epoch.py: MedMNIST's protocol picks the test figures of the best validation
epoch, the first one on a tie."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from best_epoch import best_epoch, summary  # noqa: E402


def records(val_aucs: list[float]) -> list[dict]:
    out = []
    for e, auc in enumerate(val_aucs, start=1):
        out.append({"epoch": e, "split": "train", "loss": 1.0 / e})
        out.append({"epoch": e, "split": "val", "auc": auc, "acc": 0.5})
        out.append({"epoch": e, "split": "monitor", "test_auc": 10.0 * e, "test_acc": e / 10})
    return out


def test_the_test_figures_are_those_of_the_best_validation_epoch():
    row = best_epoch(records([0.6, 0.9, 0.7, 0.9]))
    assert row == {"epoch": 2, "val_auc": 0.9, "test_auc": 20.0, "test_acc": 0.2}


def test_not_the_best_test_epoch():
    assert best_epoch(records([0.9, 0.1, 0.2]))["test_auc"] == 10.0


def test_a_run_without_test_records_is_refused():
    with pytest.raises(SystemExit, match="finetune.test_split"):
        best_epoch([r for r in records([0.5]) if r["split"] != "monitor"])


def test_summary_is_mean_and_spread():
    s = summary([{"test_auc": 0.8}, {"test_auc": 0.9}, {"test_auc": 1.0}])
    assert s["test_auc"]["mean"] == pytest.approx(0.9)
    assert s["test_auc"]["std"] == pytest.approx((2 / 300) ** 0.5)

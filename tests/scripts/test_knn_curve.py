"""tools/knn_curve.py: the k-NN monitor rows, the verdict and the figure, on a synthetic run."""

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("knn_curve", ROOT / "tools/knn_curve.py")
knn_curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(knn_curve)


def write_run(folder: Path, knn: list[float], losses: list[float]) -> Path:
    records = []
    for epoch, (k, loss) in enumerate(zip(knn, losses, strict=True), start=1):
        step = 10 * epoch
        records += [{"epoch": epoch - 1, "step": step - 5, "split": "train", "loss": loss + 0.1},
                    {"epoch": epoch - 1, "step": step, "split": "train", "loss": loss - 0.1},
                    {"epoch": epoch, "step": 10 * epoch, "split": "val", "val_loss": loss},
                    {"epoch": epoch, "step": 10 * epoch, "split": "monitor", "knn_top1": k,
                     "baseline_knn_top1": 0.1, "recon_loss": loss}]
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return folder


def test_rows_average_the_training_loss_between_monitors(tmp_path):
    run = write_run(tmp_path / "r", [0.5, 0.7], [0.4, 0.3])
    rows = knn_curve.per_epoch(knn_curve.read(run))
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["train_loss"] for r in rows] == pytest.approx([0.4, 0.3])
    assert rows[1]["knn_top1"] == 0.7 and rows[1]["baseline_knn_top1"] == 0.1


@pytest.mark.parametrize("knn, losses, verdict", [
    ([0.5, 0.6, 0.7], [0.5, 0.4, 0.3], True),
    ([0.5, 0.7, 0.6], [0.5, 0.4, 0.3], False),  # k-NN falls once
    ([0.5, 0.6, 0.7], [0.5, 0.6, 0.3], False),  # the loss rises once
    ([0.5], [0.5], False),  # one monitor shows no trend
])
def test_verdict_needs_both_trends_at_every_monitor(tmp_path, knn, losses, verdict):
    rows = knn_curve.per_epoch(knn_curve.read(write_run(tmp_path / "r", knn, losses)))
    assert knn_curve.rises_while_loss_falls(rows) is verdict


def test_main_prints_tables_and_draws_one_panel_per_run(tmp_path, capsys):
    a = write_run(tmp_path / "a", [0.5, 0.6], [0.5, 0.4])
    b = write_run(tmp_path / "b", [0.3, 0.2], [0.5, 0.4])
    out = tmp_path / "curves.png"
    knn_curve.main([str(a), str(b), "--names", "mnist", "cifar10", "--out", str(out)])
    text = capsys.readouterr().out
    assert "| 2 | 0.4000 | 0.4000 | 60.00% |" in text
    assert text.count("while the loss falls: yes") == 1 and text.count(": no") == 1
    with Image.open(out) as img:
        assert img.width > img.height  # two panels side by side


def test_a_run_without_monitors_is_named(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    record = {"step": 1, "split": "train", "loss": 1.0}
    (run / "metrics.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(SystemExit, match="no k-NN monitor records"):
        knn_curve.main([str(run), "--out", str(tmp_path / "x.png")])

"""benchmarks/volume_references.py: the simple references of a MedMNIST 3-D preset, on a
generated set whose label is the size of a blob."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from volume_files import fake_medmnist3d


def test_references_rank_the_bigger_blob_and_follow_the_protocol(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    bench = importlib.import_module("volume_references")
    fake_medmnist3d(tmp_path, side=8)
    out = tmp_path / "results.jsonl"
    row = bench.main(["-c", "adrenal3d", f"data.root={tmp_path}", "data.img_size=8",
                      "model.patch_size=4", "data.batch_size=4", "--epochs", "2",
                      "--width", "4", "--threads", "1", "--results", str(out)])
    refs = {r["reference"]: r for r in row["references"]}
    assert list(refs) == ["voxel_count", "logreg", "cnn"]
    # class 1 holds the bigger blob: its voxel count ranks every test volume right
    assert refs["voxel_count"]["auc"] == 1.0 and "acc" not in refs["voxel_count"]
    cnn = refs["cnn"]
    assert [p["epoch"] for p in cnn["curve"]] == [0, 1]
    # the test figures reported are those of the epoch with the best validation AUC
    best = max(cnn["curve"], key=lambda p: p["val_auc"])
    assert (cnn["best_epoch"], cnn["auc"], cnn["acc"]) == (
        best["epoch"], best["test_auc"], best["test_acc"])
    assert json.loads(out.read_text())["references"] == row["references"]

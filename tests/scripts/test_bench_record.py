"""benchmarks/common.record: a results line says its command without this machine's folders."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_record_writes_the_data_folder_as_a_variable_and_local_paths_relative(
        tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCH))
    common = importlib.import_module("common")
    data = tmp_path / "data"
    monkeypatch.setenv("VITMAE_DATA", f"{data}/")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bench.py", f"{data}/pretrained/w.safetensors",
                                      str(tmp_path / "runs" / "a"), "/elsewhere/b", "--x=1",
                                      f"finetune.pretrained={tmp_path}/runs/m"])
    out = tmp_path / "results.jsonl"
    common.record({"figure": 1.5}, path=out)
    row = json.loads(out.read_text())
    assert row["command"].split()[1:] == [
        "bench.py", "$VITMAE_DATA/pretrained/w.safetensors", "runs/a", "/elsewhere/b", "--x=1",
        "finetune.pretrained=runs/m"]
    assert row["figure"] == 1.5 and json.loads(capsys.readouterr().out) == {"figure": 1.5}

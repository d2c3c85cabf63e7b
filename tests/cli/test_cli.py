"""End to end on the built-in digits data: pretrain -> finetune -> evaluate / visualize, demo.

Each stage takes a few steps of the micro model. The chain runs in-process through
`vitmae.cli.commands` (fast); one `python -m vitmae pretrain` subprocess checks the real command.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vitmae.cli import main
from vitmae.config import config_from_dict, load_config

SMALL = ["model.arch=vit_micro_patch4", "data.subset=128", "data.batch_size=64"]
N_TEST = 450  # the digits test split
PNG = b"\x89PNG\r\n\x1a\n"


def run_cli(argv: list[str]) -> list[str]:
    """vitmae.cli.commands(argv) in this process; -> its stdout lines (exit status must be 0)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    assert rc == 0, out.getvalue()
    return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path | list[str]]:
    """A 2-epoch pretraining run and a 1-epoch fine-tuning run from it (4 + 2 steps)."""
    root = tmp_path_factory.mktemp("runs")
    common = ["-c", "digits", *SMALL, f"run.output_dir={root}", "run.log_interval=1"]
    run_cli(["pretrain", *common, "pretrain.optim.epochs=2", "run.name=pre"])
    fin_out = run_cli(["finetune", *common, "finetune.optim.epochs=1", "run.name=fin",
                       f"finetune.pretrained={root / 'pre'}"])
    return {"pre": root / "pre", "fin": root / "fin", "fin_out": fin_out}


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stage", ["pre", "fin"])
def test_run_folder_is_a_complete_record(runs, stage):
    run = runs[stage]
    cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    assert cfg.model.arch == "vit_micro_patch4" and cfg.data.subset == 128
    info = json.loads((run / "run.json").read_text())
    assert {"git_commit", "command", "versions"} <= info.keys()
    assert info["git_commit"] is None or isinstance(info["git_commit"], str)
    records = _records(run)
    train = [r for r in records if r["split"] == "train"]
    assert train and all({"loss", "lr", "img_s", "peak_mem_mb"} <= r.keys() for r in train)
    epochs = cfg.pretrain.optim.epochs if stage == "pre" else cfg.finetune.optim.epochs
    assert [r["epoch"] for r in records if r["split"] == "val"] == list(range(1, epochs + 1))
    ckpts = sorted(run.glob("ckpt-*"))
    assert ckpts and (ckpts[-1] / "model.safetensors").is_file()


def test_finetune_loads_the_encoder_missing_only_the_head(runs):
    assert any("new: head.bias, head.weight" in line for line in runs["fin_out"])


def test_evaluate_ends_with_a_json_line(runs):
    result = json.loads(run_cli(["evaluate", "--checkpoint", str(runs["fin"])])[-1])
    assert 0.0 <= result["top1"] <= 1.0
    assert result["n"] == N_TEST
    assert sorted(result["per_class"]) == [str(k) for k in range(10)]
    assert (runs["fin"] / "eval" / "confusion_matrix.csv").is_file()


def test_visualize_writes_a_png(runs, tmp_path):
    run_cli(["visualize", "--checkpoint", str(runs["pre"]), "--out", str(tmp_path / "r.png")])
    assert (tmp_path / "r.png").read_bytes().startswith(PNG)


def test_saving_predictions_of_a_classifier_is_an_error_naming_the_task(runs, tmp_path, capsys):
    argv = ["evaluate", "--checkpoint", str(runs["fin"]), "--save-predictions", str(tmp_path)]
    assert main(argv) == 2
    assert "task: classify" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_evaluating_an_mae_run_says_to_fine_tune_it_first(runs, capsys):
    assert main(["evaluate", "--checkpoint", str(runs["pre"])]) == 2
    err = capsys.readouterr().err
    assert "an MAE pretraining run" in err and f"finetune.pretrained={runs['pre']}" in err
    assert "Missing key" not in err and len(err.splitlines()) == 1


def test_a_missing_checkpoint_is_an_error(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nothing")]) == 2
    assert "config.yaml" in capsys.readouterr().err


@pytest.mark.slow
def test_pretrain_command_in_a_subprocess(tmp_path, subprocess_env):
    argv = ["pretrain", "-c", "digits", *SMALL, "pretrain.optim.epochs=1",
            f"run.output_dir={tmp_path}", "run.name=pre"]
    out = subprocess.run([sys.executable, "-m", "vitmae", *argv], capture_output=True,
                         text=True, env=subprocess_env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-1] == f"run folder: {tmp_path / 'pre'}"
    info = json.loads((tmp_path / "pre" / "run.json").read_text())
    assert info["command"][1:] == argv
    assert load_config("digits", [*SMALL, "pretrain.optim.epochs=1", f"run.output_dir={tmp_path}",
                                  "run.name=pre"]) == config_from_dict(
        yaml.safe_load((tmp_path / "pre" / "config.yaml").read_text()))
    assert list((tmp_path / "pre").glob("ckpt-*/model.safetensors"))


def test_demo_ends_with_the_evaluation_json(tmp_path):
    lines = run_cli(["demo", "model.arch=vit_micro_patch4", "pretrain.optim.epochs=1",
                     "finetune.optim.epochs=1", "data.subset=256", f"run.output_dir={tmp_path}",
                     "run.name=demo"])
    result = json.loads(lines[-1])
    assert result["n"] == N_TEST and 0.0 <= result["top1"] <= 1.0
    assert (tmp_path / "demo" / "reconstruction.png").read_bytes().startswith(PNG)
    assert f"report: {tmp_path / 'demo' / 'report.html'}" in lines
    assert (tmp_path / "demo" / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_a_user_error_is_one_line_and_debug_adds_the_traceback(capsys):
    argv = ["config", "-c", "digits", "data.batch_size=abc"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitmae: error: data.batch_size") and "Traceback" not in err
    for debug in (["--debug", *argv], [*argv[:1], "--debug", *argv[1:]]):
        assert main(debug) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and "ConfigError" in err and "vitmae: error: " in err


@pytest.mark.parametrize("bug", [ValueError("internal"), OSError("internal"), KeyError("x")])
def test_an_internal_error_keeps_its_traceback(monkeypatch, bug):
    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr("vitmae.cli.commands.load_config", broken)
    with pytest.raises(type(bug), match="internal|x"):
        main(["config", "-c", "digits"])


@pytest.mark.parametrize("argv", [
    ["visualize", "--checkpoint", "RUN", "-o", "out.png"],
    ["report", "RUN", "-o", "out.html"],
    ["predict", "--checkpoint", "RUN", "img.png", "-o", "out"],
    ["embed", "--checkpoint", "RUN", "img.png", "-o", "out.npy"],
])
def test_o_is_the_short_form_of_out_on_every_command_that_writes_a_file(argv):
    from vitmae.cli.parser import build_parser

    assert build_parser().parse_args(argv).out == argv[-1]

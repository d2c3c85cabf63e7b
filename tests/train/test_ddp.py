"""Two processes on CPU (gloo) under torchrun: the ranks stay in step and metrics cover all data.

A small launcher script wraps the engine's `fit` so that each rank writes a hash of its final
weights and the metrics it computed, then runs `vitmae finetune` through the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli.test_cli import run_cli
from cli.test_seg_cli import TINY
from data.test_mnist import N_TEST, write_mnist

from vitmae.runs.checkpoint import read_weights
from vitmae.runs.folder import run_differences

LAUNCHER = textwrap.dedent('''
    import hashlib, json, os, sys
    from pathlib import Path

    from vitmae import cli
    from vitmae.train import runner

    fit = runner.fit

    def fit_and_report(model, *args, **kwargs):
        metrics = fit(model, *args, **kwargs)
        state = model.state_dict()
        blob = b"".join(state[k].detach().contiguous().numpy().tobytes() for k in sorted(state))
        report = {"sha256": hashlib.sha256(blob).hexdigest(), "metrics": metrics}
        Path(sys.argv[1], f"rank{os.environ['RANK']}.json").write_text(json.dumps(report))
        return metrics

    runner.fit = fit_and_report
    sys.exit(cli.main(sys.argv[2:]))
''')


def _digest(state) -> str:
    import hashlib

    blob = b"".join(state[k].contiguous().numpy().tobytes() for k in sorted(state))
    return hashlib.sha256(blob).hexdigest()  # as the launcher computes it


def run_two_ranks(tmp_path, argv: list[str], env: dict[str, str]) -> list[dict]:
    """`vitmae <argv>` under torchrun with 2 CPU ranks -> each rank's report (weights' hash,
    final metrics); the ranks must have ended with the same weights."""
    script = tmp_path / "launch.py"
    script.write_text(LAUNCHER)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", str(script), str(tmp_path), *argv,
                          "run.device=cpu", "run.threads=1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.count("run folder: ") == 1, out.stdout  # logged by rank 0 alone
    assert out.stdout.count("fine-tuning ") == 1, out.stdout
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0]["sha256"] == reports[1]["sha256"], "the ranks' weights differ"
    return reports


@pytest.mark.slow
def test_two_ranks_end_identical_and_evaluate_the_whole_test_set(tmp_path, subprocess_env):
    argv = ["finetune", "-c", "digits", "model.arch=vit_micro_patch4", "data.subset=128",
            "data.batch_size=32", "finetune.optim.epochs=1", f"run.output_dir={tmp_path}",
            "run.name=ddp"]
    reports = run_two_ranks(tmp_path, argv, subprocess_env)
    assert _digest(read_weights(tmp_path / "ddp")) == reports[0]["sha256"]
    for report in reports:
        assert report["metrics"]["n"] == 450  # 225 per rank, reduced over both
    info = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert info["world_size"] == 2
    train = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").open()]
    assert max(r["step"] for r in train) == 2  # 128 images / 2 ranks / 32 per batch


@pytest.mark.slow
def test_two_ranks_segment_and_sum_one_confusion_matrix(tmp_path, subprocess_env):
    """The mnist_seg preset as the README runs it (torchrun, 2 ranks): the ranks end identical,
    and the metrics of the confusion matrix summed over both ranks are those of one process
    evaluating the saved weights on the whole test set."""
    write_mnist(tmp_path / "data")
    argv = ["finetune", "-c", "mnist_seg", *TINY, f"data.root={tmp_path / 'data'}",
            "data.img_size=16", "data.batch_size=4", "finetune.optim.epochs=1",
            f"run.output_dir={tmp_path}", "run.name=seg"]
    reports = run_two_ranks(tmp_path, argv, subprocess_env)
    single = json.loads(run_cli(["evaluate", "--checkpoint", str(tmp_path / "seg")])[-1])
    pixels = N_TEST * 16 * 16
    for report in reports:
        ddp = report["metrics"]
        assert ddp["n"] == single["n"] == N_TEST  # 5 canvases per rank, summed
        # the same weights on other batch compositions: a logit may differ in its last bit,
        # so allow one flipped pixel in each accuracy; a rank's half missing would be far off
        assert abs(ddp["pixel_acc"] - single["pixel_acc"]) <= 1 / pixels
        assert abs(ddp["baseline_pixel_acc"] - single["baseline_pixel_acc"]) <= 1e-12


STOPPING = textwrap.dedent('''
    import os, signal, sys

    sys.path.insert(0, sys.argv[1])  # the tests folder: reliability.self_stop
    from reliability.self_stop import stop_at_micro_batch
    from vitmae import cli

    if int(sys.argv[2]) and os.environ["RANK"] == "0":  # one rank gets the signal
        stop_at_micro_batch(int(sys.argv[2]), lambda: os.kill(os.getpid(), signal.SIGTERM))
    sys.exit(cli.main(sys.argv[3:]))
''')


def _torchrun(tmp_path, stop_at: int, argv: list[str], env) -> subprocess.CompletedProcess:
    script = tmp_path / "stopping.py"
    script.write_text(STOPPING)
    tests = str(Path(__file__).resolve().parents[1])
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", str(script), tests, str(stop_at), *argv],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_two_ranks_stopped_mid_run_resume_bit_identical(tmp_path, subprocess_env):
    """SIGTERM to rank 0 alone at its third micro-batch: both ranks stop at the same step (the
    stop flag is a collective), the checkpoint holds both ranks' RNG states, and the resumed
    2-rank run ends with the weights and records of the uninterrupted one; drop-path, patch
    dropout and layer decay on, so each rank's random draws must be replayed."""
    argv = ["finetune", "-c", "digits", "model.arch=vit_micro_patch4", "data.subset=128",
            "data.batch_size=32", "finetune.optim.epochs=2", "model.drop_path=0.2",
            "model.patch_drop=0.25", "finetune.optim.layer_decay=0.75", "run.log_interval=1",
            "run.device=cpu", "run.threads=1", f"run.output_dir={tmp_path}"]
    ref = _torchrun(tmp_path, 0, [*argv, "run.name=ref"], subprocess_env)
    assert ref.returncode == 0, ref.stderr[-3000:]
    stopped = _torchrun(tmp_path, 3, [*argv, "run.name=stopped"], subprocess_env)
    assert stopped.returncode != 0 and "stopped by SIGTERM at step 3" in stopped.stdout + \
        stopped.stderr, stopped.stderr[-3000:]
    resumed = _torchrun(tmp_path, 0, ["finetune", "--resume", str(tmp_path / "stopped"),
                                      "run.device=cpu"], subprocess_env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step 3" in resumed.stdout + resumed.stderr
    assert not run_differences(tmp_path / "stopped", tmp_path / "ref")

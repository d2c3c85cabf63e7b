"""SIGTERM or Ctrl-C finishes the step, writes a checkpoint, says where it is and
how to resume, exits 128 + signal; the run then resumes exactly. Under DDP every rank stops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from vitmae.cli import main
from vitmae.runs.checkpoint import list_checkpoints, verify_checkpoint
from vitmae.tasks.pretrain import PretrainTask

from .cli_runs import assert_same_run, pretrain_argv, resume


def _check_stopped(run, code: int, signum: int, stderr: str) -> None:
    assert code == 128 + signum, stderr[-2000:]
    ckpt = list_checkpoints(run)[-1]
    verify_checkpoint(ckpt)
    assert f"checkpoint written to {ckpt}" in stderr
    assert f"Resume with: --resume {run}" in stderr
    # one notice: forked DataLoader workers get Ctrl-C too but leave the stop to the main process
    assert stderr.count(f"received {signal.Signals(signum).name}") == 1


def test_ctrl_c_to_the_process_group_with_a_worker(runs, capsys):
    stopped = runs["int_group"]
    _check_stopped(stopped.run, stopped.returncode, signal.SIGINT, stopped.stderr)
    assert "stopped by SIGINT at step 7;" in stopped.stderr  # the step it was sent in
    code, out = resume(stopped.run, capsys)
    assert code == 0, out
    assert_same_run(stopped.run, runs["ref"].run)


def test_sigterm_mid_step_finishes_it_then_stops(runs, tmp_path, monkeypatch, capsys):
    """SIGTERM delivered to this process in the middle of step 3 (in-process CLI)."""
    calls = []
    train_step = PretrainTask.train_step

    def signalled_step(self, model, batch, generator=None):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return train_step(self, model, batch, generator)

    monkeypatch.setattr(PretrainTask, "train_step", signalled_step)
    code = main(pretrain_argv(tmp_path, "term"))
    monkeypatch.undo()
    err = capsys.readouterr().err
    run = tmp_path / "term"
    _check_stopped(run, code, signal.SIGTERM, err)
    assert "stopped by SIGTERM at step 3;" in err and len(calls) == 3
    code, out = resume(run, capsys)
    assert code == 0, out
    assert_same_run(run, runs["ref"].run)


def _wait_for(path, predicate, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and predicate(path.read_text()):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise TimeoutError(path)


@pytest.mark.slow
def test_sigterm_under_ddp_stops_every_rank(tmp_path, subprocess_env):
    """torchrun forwards SIGTERM to both gloo ranks; they agree on the step, rank 0 saves."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "vitmae", *pretrain_argv(tmp_path, "ddp"),
            "data.batch_size=16"]
    env = {**subprocess_env, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(argv, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    _wait_for(tmp_path / "ddp" / "metrics.jsonl", lambda t: len(t.splitlines()) >= 2, proc)
    os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert stderr.count("stopped by SIGTERM") == 2, stderr[-3000:]  # both ranks, same step
    assert "Traceback" not in stderr.split("stopped by SIGTERM")[0]
    ckpt = list_checkpoints(tmp_path / "ddp")[-1]
    verify_checkpoint(ckpt)

"""`python self_stop.py HOW N ARGV...`: the `vitmae ARGV` command in a process that signals
itself at an exact point, so that where a run stops never depends on a poller's timing.

HOW is one of
  kill-step  SIGKILL at the start of training micro-batch N (1-based, counted in this process)
  kill-save  SIGKILL inside the save of checkpoint N, once its files are written to the
             temporary folder and before the rename that would publish it
  int-group  SIGINT to the whole process group at the start of micro-batch N, as Ctrl-C in a
             terminal (DataLoader workers get it too)
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import vitmae.runs.checkpoint
import vitmae.train.steps
from vitmae.cli import main


def stop_at_micro_batch(n: int, stop, patch=setattr) -> None:
    """Call `stop()` when the step strategy is handed its n-th micro-batch; `patch` sets the
    attribute (a test in its own process passes `monkeypatch.setattr`)."""
    step, calls = vitmae.train.steps.PlainStep.__call__, [0]

    def counted(self, task, batch, last_micro: bool):
        calls[0] += 1
        if calls[0] == n:
            stop()
        return step(self, task, batch, last_micro)

    patch(vitmae.train.steps.PlainStep, "__call__", counted)


def kill_in_save(step: int) -> None:
    """SIGKILL when the save of checkpoint `step` syncs its temporary folder (all written)."""
    fsync_dir = vitmae.runs.checkpoint._fsync_dir
    tmp = f"{vitmae.runs.checkpoint.TMP}{vitmae.runs.checkpoint.PREFIX}{step:09d}-"

    def killed_when_due(path: Path) -> None:
        if Path(path).name.startswith(tmp):
            os.kill(os.getpid(), signal.SIGKILL)
        fsync_dir(path)

    vitmae.runs.checkpoint._fsync_dir = killed_when_due


if __name__ == "__main__":
    how, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if how == "kill-step":
        stop_at_micro_batch(n, lambda: os.kill(os.getpid(), signal.SIGKILL))
    elif how == "kill-save":
        kill_in_save(n)
    elif how == "int-group":
        stop_at_micro_batch(n, lambda: os.killpg(os.getpgid(0), signal.SIGINT))
    else:
        raise SystemExit(f"unknown HOW {how!r}")
    sys.exit(main(argv))

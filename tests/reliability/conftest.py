"""Session fixture of the reliability tests: the reference pretraining run (in this process)
and three `python -m vitmae pretrain` processes killed or signalled at given steps, run once,
at the same time; the tests then resume them and compare (see cli_runs.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from vitmae.cli import main

from .cli_runs import pretrain_argv


@dataclass
class Interrupted:
    """A CLI run that was stopped: its folder, exit code and output."""

    run: Path
    returncode: int
    stdout: str
    stderr: str


# name -> (metrics.jsonl lines to wait for, signal, extra overrides, signal the whole group)
PLANS = {
    "kill_w0": (2, signal.SIGKILL, ("data.num_workers=0",), False),
    "kill_w1": (4, signal.SIGKILL, ("data.num_workers=1",), False),
    # Ctrl-C in a terminal reaches the whole process group, DataLoader workers included
    "int_group": (3, signal.SIGINT, ("data.num_workers=1",), True),
}


def _line_count(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def _signal_when_due(procs: dict[str, subprocess.Popen], out: Path) -> None:
    """Send each process its signal once its metrics.jsonl has enough lines."""
    pending, deadline = set(procs), time.monotonic() + 300
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            lines, sig, _, group = PLANS[name]
            if _line_count(out / name / "metrics.jsonl") >= lines:
                os.killpg(procs[name].pid, sig) if group else procs[name].send_signal(sig)
                pending.discard(name)
            elif procs[name].poll() is not None:
                pending.discard(name)  # finished or failed first: the test will say so
        time.sleep(0.01)


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Interrupted]:
    """The reference run (in this process) and three interrupted CLI processes, concurrently."""
    out = tmp_path_factory.mktemp("runs")
    src = Path(__file__).resolve().parents[2] / "src"
    path = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    procs = {name: subprocess.Popen(
        [sys.executable, "-m", "vitmae", *pretrain_argv(out, name, *extra)], env=env,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        for name, (_, _, extra, _) in PLANS.items()}
    signaller = threading.Thread(target=_signal_when_due, args=(procs, out), daemon=True)
    signaller.start()
    done = {"ref": Interrupted(out / "ref", main(pretrain_argv(out, "ref")), "", "")}
    signaller.join()
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        done[name] = Interrupted(out / name, p.returncode, stdout, stderr)
    assert done["ref"].returncode == 0
    return done

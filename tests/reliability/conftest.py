"""Session fixture of the reliability tests: the reference pretraining run (in this process)
and three `vitmae pretrain` processes that kill or signal themselves at exact points
(self_stop.py), run once, at the same time; the tests then resume them and compare (see
cli_runs.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
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


# name -> (how and where it stops itself (self_stop.py), extra overrides). With 4 steps per
# epoch and a checkpoint every 2 steps and at each epoch end (cli_runs.RUN):
PLANS = {
    # killed while saving ckpt-8 (epoch 1's end): resumes mid-epoch from ckpt-6
    "kill_w0": ("kill-save", 8, ("data.num_workers=0",)),
    # killed in step 11: resumes mid-epoch from ckpt-10, with a worker process
    "kill_w1": ("kill-step", 11, ("data.num_workers=1",)),
    # Ctrl-C in a terminal reaches the whole process group, DataLoader workers included;
    # sent in step 7, which finishes and is saved
    "int_group": ("int-group", 7, ("data.num_workers=1",)),
}


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, Interrupted]:
    """The reference run (in this process) and three self-stopping CLI processes, concurrently."""
    out = tmp_path_factory.mktemp("runs")
    src = Path(__file__).resolve().parents[2] / "src"
    path = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    child = str(Path(__file__).with_name("self_stop.py"))
    procs = {name: subprocess.Popen(
        [sys.executable, child, how, str(n), *pretrain_argv(out, name, *extra)], env=env,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        for name, (how, n, extra) in PLANS.items()}
    done = {"ref": Interrupted(out / "ref", main(pretrain_argv(out, "ref")), "", "")}
    for name, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        done[name] = Interrupted(out / name, p.returncode, stdout, stderr)
    assert done["ref"].returncode == 0
    return done

"""A run killed with SIGKILL at an arbitrary step and resumed with --resume ends
bit-identical to an uninterrupted run (weights and metrics.jsonl), with 0 or 1 workers.

Both killed runs are compared with the same reference (num_workers=0): the data order and
augmentation depend on (seed, epoch, index) only, not on which process loads a sample.
"""

from __future__ import annotations

import signal

import pytest

from vitmae.runs.checkpoint import list_checkpoints, verify_checkpoint
from vitmae.runs.folder import metric_records

from .cli_runs import assert_same_run, resume


@pytest.mark.parametrize("name", ["kill_w0", "kill_w1"])
def test_sigkill_then_resume_is_bit_identical(runs, name, capsys):
    killed, ref = runs[name], runs["ref"].run
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert len(metric_records(killed.run)) < len(metric_records(ref))
    for ckpt in list_checkpoints(killed.run):
        verify_checkpoint(ckpt)  # whatever the kill interrupted, what is there is whole
    code, out = resume(killed.run, capsys)
    assert code == 0, out
    assert "resumed from" in out and ", batch " in out
    assert_same_run(killed.run, ref)
    assert not list(killed.run.glob(".tmp-*")), "an interrupted save was left behind"


def test_reference_keeps_the_last_two_checkpoints(runs):
    # keep_last defaults to 2: of ckpt-2, 4, ..., 12 only the last two are left
    names = [p.name for p in list_checkpoints(runs["ref"].run)]
    assert names == ["ckpt-000000010", "ckpt-000000012"]

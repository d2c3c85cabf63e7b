"""A run killed with SIGKILL, in a step or in the middle of a checkpoint save, and resumed
with --resume ends bit-identical to an uninterrupted run (weights and metrics.jsonl), with 0
or 1 workers.

Both killed runs are compared with the same reference (num_workers=0): the data order and
augmentation depend on (seed, epoch, index) only, not on which process loads a sample. The
runs kill themselves at exact points (conftest.PLANS), so every number below is known.
"""

from __future__ import annotations

import signal

import pytest

from vitmae.runs.checkpoint import list_checkpoints, verify_checkpoint
from vitmae.runs.folder import metric_records

from .cli_runs import assert_same_run, resume

# name -> (the newest whole checkpoint when killed, where the resumed run starts, the last
# metrics.jsonl record written before the kill (split, step): records come every 3 steps
# (train), and a val and a monitor record at each epoch end)
KILLED = {
    "kill_w0": (6, "epoch 1, batch 2, step 6", ("monitor", 8)),  # ckpt-8 is saved after them
    "kill_w1": (10, "epoch 2, batch 2, step 10", ("train", 9)),
}


@pytest.mark.parametrize("name", ["kill_w0", "kill_w1"])
def test_sigkill_then_resume_is_bit_identical(runs, name, capsys):
    killed, ref = runs[name], runs["ref"].run
    newest, where, last = KILLED[name]
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    records = metric_records(killed.run)
    assert records == metric_records(ref)[:len(records)]
    assert (records[-1]["split"], records[-1]["step"]) == last
    ckpts = list_checkpoints(killed.run)
    assert [p.name for p in ckpts] == [f"ckpt-{s:09d}" for s in (newest - 2, newest)]
    for ckpt in ckpts:
        verify_checkpoint(ckpt)  # whatever the kill interrupted, what is there is whole
    partial = sorted(p.name for p in killed.run.glob(".tmp-*"))
    in_save = name == "kill_w0"  # its temporary folder stays behind
    assert [p.split("-")[2] for p in partial] == (["000000008"] if in_save else [])
    code, out = resume(killed.run, capsys)
    assert code == 0, out
    assert f"resumed from {ckpts[-1]} at {where}" in out
    assert ("a checkpoint save that was interrupted" in out) == in_save
    assert_same_run(killed.run, ref)
    assert not list(killed.run.glob(".tmp-*")), "an interrupted save was left behind"


def test_reference_keeps_the_last_two_checkpoints(runs):
    # keep_last defaults to 2: of ckpt-2, 4, ..., 12 only the last two are left
    names = [p.name for p in list_checkpoints(runs["ref"].run)]
    assert names == ["ckpt-000000010", "ckpt-000000012"]

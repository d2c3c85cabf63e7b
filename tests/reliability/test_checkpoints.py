"""Checkpoints are atomic and verified. A truncated or corrupted file is named;
--resume falls back to the previous good checkpoint and says so; a save killed at any moment
leaves a loadable checkpoint; keep_last is honoured; leftovers of killed saves are removed."""

from __future__ import annotations

import os
import shutil

import pytest
import torch.nn as nn

from vitmae.runs.checkpoint import (
    CheckpointError,
    latest_good_checkpoint,
    list_checkpoints,
    read_weights,
    save_checkpoint,
    verify_checkpoint,
)

from .cli_runs import assert_same_run, copy_run, flip_byte, resume, truncate

NEWEST = "ckpt-000000012"


@pytest.mark.parametrize("name, damage, reason", [
    ("model.safetensors", truncate, "truncated"),
    ("model.safetensors", flip_byte, "sha256"),
    ("state.pt", truncate, "truncated"),
    ("state.pt", flip_byte, "sha256"),
    ("state.pt", os.remove, "missing"),
    ("meta.json", lambda p: p.write_text("{not json"), "unreadable"),
    ("meta.json", lambda p: p.write_text('{"files": 3}'), "malformed"),
])
def test_a_damaged_file_is_named(runs, tmp_path, name, damage, reason):
    ckpt = tmp_path / NEWEST
    shutil.copytree(runs["ref"].run / NEWEST, ckpt)
    damage(ckpt / name)
    with pytest.raises(CheckpointError, match=reason) as e:
        verify_checkpoint(ckpt)
    assert str(ckpt / name) in str(e.value)


def test_resume_falls_back_to_the_previous_good_checkpoint(runs, tmp_path, capsys):
    run = copy_run(runs["ref"].run, tmp_path / "run")
    flip_byte(run / NEWEST / "model.safetensors")
    with pytest.raises(CheckpointError):
        verify_checkpoint(run / NEWEST)
    code, out = resume(run, capsys)
    assert code == 0, out
    assert f"checkpoint {NEWEST} is not usable" in out and "falling back" in out
    assert "resumed from" in out and "ckpt-000000010" in out
    assert_same_run(run, runs["ref"].run)  # steps 11 and 12 redone, bit for bit


def test_a_killed_save_leaves_a_loadable_checkpoint(runs, tmp_path, capsys):
    """What a kill during the save of step 12 could leave: its temporary folder, half
    written, and (were the rename not atomic) a partial ckpt-12."""
    run = copy_run(runs["ref"].run, tmp_path / "run")
    tmp = run / f".tmp-{NEWEST}-4242"
    shutil.copytree(run / NEWEST, tmp)
    truncate(tmp / "model.safetensors")
    os.remove(run / NEWEST / "state.pt")
    assert latest_good_checkpoint(run).name == "ckpt-000000010"
    assert read_weights(run).keys()  # evaluation and fine-tuning can load it meanwhile
    code, out = resume(run, capsys)
    assert code == 0, out
    assert f"removed {tmp.name}" in out and not tmp.exists()
    assert_same_run(run, runs["ref"].run)


def test_a_kill_between_the_renames_of_a_same_step_save(tmp_path, monkeypatch):
    """A second save of a step first renames the old one to ckpt-N.prev: kill the process
    right after that and ckpt-N.prev is what resumption finds."""
    model = nn.Linear(3, 2)
    save_checkpoint(tmp_path, 5, model, {"n": 1}, {}, keep_last=1)
    real_replace = os.replace

    def killed_before_second_rename(src, dst):
        if ".tmp-" in str(src):
            raise KeyboardInterrupt  # stands in for SIGKILL
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_before_second_rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 5, model, {"n": 2}, {}, keep_last=1)
    monkeypatch.undo()
    good = latest_good_checkpoint(tmp_path)
    assert good.name == "ckpt-000000005.prev" and read_weights(tmp_path).keys()
    assert not list(tmp_path.glob(".tmp-*"))
    save_checkpoint(tmp_path, 5, model, {"n": 3}, {}, keep_last=1)  # the resumed run's save
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000005"]


@pytest.mark.parametrize("keep_last", [1, 3])
def test_keep_last_and_abandoned_newer_checkpoints(tmp_path, keep_last):
    model = nn.Linear(3, 2)
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path, step, model, {}, {}, keep_last=keep_last)
    expected = [f"ckpt-{s:09d}" for s in (2, 4, 6, 8)][-keep_last:]
    assert [p.name for p in list_checkpoints(tmp_path)] == expected
    # A run resumed from ckpt-6 (ckpt-8 corrupt) saves step 7: ckpt-8 belongs to the
    # abandoned timeline and goes, so it can never shadow or outlive the good ones.
    flip_byte(tmp_path / "ckpt-000000008" / "state.pt", 10)
    save_checkpoint(tmp_path, 7, model, {}, {}, keep_last=keep_last)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == [f"ckpt-{s:09d}" for s in (2, 4, 6, 7)][-keep_last:]


def test_a_sharded_run_resumes_bit_for_bit(tmp_path, capsys):
    # run.shards=2: the masks come from per-shard generators seeded from torch's default one,
    # whose state the checkpoint holds, so steps 11 and 12 redone from ckpt-10 are the same
    from vitmae.cli import main

    from .cli_runs import pretrain_argv

    assert main(pretrain_argv(tmp_path, "ref", "run.shards=2")) == 0
    ref = tmp_path / "ref"
    run = copy_run(ref, tmp_path / "run")
    shutil.rmtree(run / NEWEST)
    code, out = resume(run, capsys)
    assert code == 0, out
    assert "resumed from" in out and "ckpt-000000010" in out
    assert_same_run(run, ref)

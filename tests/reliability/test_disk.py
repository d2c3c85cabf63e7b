"""A run folder that cannot be written is detected at start; a save that fails
(disk full) is reported, keeps the previous checkpoint, and stops the run cleanly (exit 2) so
that it can be resumed once there is space: training on would only add work that cannot be
saved."""

from __future__ import annotations

import errno

import pytest

import vitmae.runs.checkpoint
from vitmae.cli import main
from vitmae.runs.checkpoint import list_checkpoints, verify_checkpoint

from .cli_runs import assert_same_run, pretrain_argv, resume


def _file_in_the_way(tmp_path):
    (tmp_path / "file").write_text("a regular file, not a folder")
    return tmp_path / "file" / "runs"


def _unwritable_probe(tmp_path, monkeypatch):
    def refuse(path, *args, **kwargs):  # as a read-only folder would, even for root
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("vitmae.runs.folder.open", refuse, raising=False)
    return tmp_path / "runs"


@pytest.mark.parametrize("make_bad", [_file_in_the_way, _unwritable_probe])
def test_unwritable_run_folder_fails_at_start(tmp_path, monkeypatch, capsys, make_bad):
    out = make_bad(tmp_path, monkeypatch) if make_bad is _unwritable_probe \
        else make_bad(tmp_path)
    code = main(pretrain_argv(out, "r"))
    captured = capsys.readouterr()
    assert code == 2
    assert f"run folder {out / 'r'} cannot be created or written" in captured.err
    assert "pretraining" not in captured.out  # stopped before training started


def test_disk_full_during_a_save_keeps_the_previous_checkpoint(runs, tmp_path, monkeypatch,
                                                                capsys):
    saves = []
    real_save = vitmae.runs.checkpoint.save_file

    def second_save_fails(tensors, filename, *args, **kwargs):
        saves.append(filename)
        if len(saves) == 2:
            with open(filename, "wb") as f:  # a partial file, then the disk is full
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(vitmae.runs.checkpoint, "save_file", second_save_fails)
    code = main(pretrain_argv(tmp_path, "full"))
    monkeypatch.undo()
    err = capsys.readouterr().err
    run = tmp_path / "full"
    assert code == 2
    assert "No space left on device" in err and "ckpt-000000004" in err
    assert "keeps ckpt-000000002" in err and f"--resume {run}" in err
    assert [p.name for p in run.iterdir() if "ckpt" in p.name] == ["ckpt-000000002"]
    verify_checkpoint(list_checkpoints(run)[-1])
    code, out = resume(run, capsys)  # space again: the run completes as if nothing happened
    assert code == 0, out
    assert_same_run(run, runs["ref"].run)

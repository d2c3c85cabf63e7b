"""Helpers of the reliability tests: the reference CLI run (tiny pretraining on the built-in
digits data), in-process resumption, and the comparison that says a resumed run is exact."""

from __future__ import annotations

import shutil
from pathlib import Path

from vitmae.cli import main
from vitmae.runs.folder import run_differences

# 128 images / batch 32 = 4 steps per epoch, 3 epochs; a checkpoint every 2 steps and at
# each epoch end. A metrics.jsonl line every 3 steps, so a checkpoint can fall between two
# (the running means must be saved too), and a validation line per epoch: the lines are
# step 3, val 1, step 6, val 2, step 9, step 12, val 3.
RUN = ("-c", "digits", "model.arch=vit_micro_patch4", "model.decoder_embed_dim=32",
       "model.decoder_depth=1", "model.decoder_num_heads=2", "data.subset=128",
       "data.batch_size=32", "pretrain.optim.epochs=3", "pretrain.optim.warmup_epochs=1",
       "run.ckpt_interval=2", "run.log_interval=3", "run.threads=1")


def pretrain_argv(out: Path, name: str, *extra: str) -> list[str]:
    """Arguments of `vitmae pretrain` for the reference configuration."""
    return ["pretrain", *RUN, f"run.output_dir={out}", f"run.name={name}", *extra]


def assert_same_run(run: Path, reference: Path) -> None:
    """Bit-identical final weights and identical metrics.jsonl (timing aside)."""
    differences = run_differences(run, reference)
    assert not differences, f"differs from the uninterrupted run: {differences}"


def resume(run: Path, capsys, command: str = "pretrain") -> tuple[int, str]:
    """`vitmae <command> --resume run` in this process -> (exit code, stdout + stderr)."""
    capsys.readouterr()
    code = main([command, "--resume", str(run)])
    out = capsys.readouterr()
    return code, out.out + out.err


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a run folder to tamper with."""
    shutil.copytree(run, dest)
    return dest


def flip_byte(path: Path, offset: int = -100) -> None:
    """Corrupt one byte in place (same size: only the hash can tell)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

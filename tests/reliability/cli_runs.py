"""Helpers of the reliability tests: the reference CLI run (tiny pretraining on the built-in
digits data), in-process resumption, and the comparison that says a resumed run is exact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from vitmae.checkpoint import list_checkpoints
from vitmae.cli import main

# 128 images / batch 32 = 4 steps per epoch, 3 epochs; a checkpoint every 2 steps (and at
# each epoch end); one metrics.jsonl line per step plus one validation line per epoch.
STEPS_PER_EPOCH, EPOCHS = 4, 3
RUN = ("-c", "digits", "model.arch=vit_micro_patch4", "model.decoder_embed_dim=32",
       "model.decoder_depth=1", "model.decoder_num_heads=2", "data.subset=128",
       "data.batch_size=32", f"pretrain.epochs={EPOCHS}", "pretrain.warmup_epochs=1",
       "run.ckpt_interval=2", "run.log_interval=1", "run.threads=1")
NOISE = ("img_s", "peak_mem_mb")  # timing fields: differ between any two runs


def pretrain_argv(out: Path, name: str, *extra: str) -> list[str]:
    """Arguments of `vitmae pretrain` for the reference configuration."""
    return ["pretrain", *RUN, f"run.output_dir={out}", f"run.name={name}", *extra]


def records(run: Path) -> list[dict]:
    """metrics.jsonl without the timing fields."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in NOISE} for x in lines]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(list_checkpoints(run)[-1] / "model.safetensors"))


def assert_same_run(run: Path, reference: Path) -> None:
    """Bit-identical final weights and identical loss/lr records."""
    a, b = final_weights(run), final_weights(reference)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"weights differ from the uninterrupted run: {differ}"
    assert records(run) == records(reference)
    assert list_checkpoints(run)[-1].name == list_checkpoints(reference)[-1].name


def resume(run: Path, capsys) -> tuple[int, str]:
    """`vitmae pretrain --resume run` in this process -> (exit code, stdout + stderr)."""
    capsys.readouterr()
    code = main(["pretrain", "--resume", str(run)])
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

"""Checkpoints: atomic, verified, resumable, and safe to load from strangers.

A checkpoint is a folder `ckpt-<step>/` in the run folder holding
  model.safetensors   the unwrapped model's weights (what fine-tuning and evaluation load),
  state.pt            optimizer state, progress counters and RNG states (tensors and plain
                      Python only: loaded with `torch.load(weights_only=True)`),
  meta.json           step, config, and the size and sha256 of the two files above.
It is written into a temporary folder, every file flushed and fsynced, then renamed into
place (as timm's `CheckpointSaver` does with `os.replace`), so a process killed mid-save
leaves the previous checkpoints untouched. The last `keep_last` are kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

PREFIX = "ckpt-"
FILES = ("model.safetensors", "state.pt")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt, unsafe or does not fit the model."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": _plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(x: Any) -> Any:
    return [_plain(v) for v in x] if isinstance(x, tuple | list) else x


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, state: dict,
                    config: dict, keep_last: int = 2) -> Path:
    """Write ckpt-<step>/ atomically and prune older ones; returns the folder."""
    run_dir = Path(run_dir)
    final = run_dir / f"{PREFIX}{step:09d}"
    tmp = run_dir / f".tmp-{PREFIX}{step:09d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        weights = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
        meta = {"step": step, "config": config,
                "files": {n: {"size": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)}
                          for n in FILES}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        for name in (*FILES, "meta.json"):
            with open(tmp / name, "rb+") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():  # a rerun of the same step: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, oldest first."""
    found = [p for p in Path(run_dir).glob(f"{PREFIX}*") if p.is_dir() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def verify_checkpoint(ckpt: Path) -> None:
    """Raise CheckpointError unless every file is present with its recorded size and hash."""
    meta_path = ckpt / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{meta_path}: missing or unreadable ({e})") from None
    for name, info in meta["files"].items():
        path = ckpt / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
        if path.stat().st_size != info["size"]:
            raise CheckpointError(f"{path}: size {path.stat().st_size} bytes, expected "
                                  f"{info['size']} (truncated or overwritten)")
        if _sha256(path) != info["sha256"]:
            raise CheckpointError(f"{path}: sha256 does not match meta.json (corrupted)")


def latest_good_checkpoint(run_dir: Path, log=print) -> Path | None:
    """The newest checkpoint that verifies; older ones are tried in turn, saying why."""
    for ckpt in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(ckpt)
            return ckpt
        except CheckpointError as e:
            log(f"checkpoint {ckpt.name} is not usable ({e}); falling back to the previous one")
    return None


def load_state(ckpt: Path) -> dict:
    """The training state of a verified checkpoint (weights-only unpickling)."""
    return safe_torch_load(ckpt / "state.pt")


def safe_torch_load(path: Path) -> Any:
    """torch.load that refuses anything needing arbitrary unpickling."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: the file needs arbitrary Python objects to be unpickled, "
            f"which can run code. Only tensors and plain data are accepted "
            f"(weights_only=True). Details: {str(e).splitlines()[0]}") from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file, a torch file (weights only), a checkpoint folder,
    or a run folder (its newest good checkpoint). Public MAE `.pth` files keep weights under
    'model'."""
    path = Path(path)
    if path.is_dir():
        if (path / "model.safetensors").is_file():
            verify_checkpoint(path) if (path / "meta.json").is_file() else None
            path = path / "model.safetensors"
        else:
            ckpt = latest_good_checkpoint(path)
            if ckpt is None:
                raise CheckpointError(f"{path}: no usable checkpoint (no ckpt-* folder verifies)")
            path = ckpt / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    obj = safe_torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict)")
    return obj

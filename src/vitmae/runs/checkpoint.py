"""Checkpoints: atomic, verified, resumable, and safe to load from strangers.

A checkpoint is a folder `ckpt-<step>/` in the run folder holding
  model.safetensors   the unwrapped model's weights (what fine-tuning and evaluation load),
  state.pt            optimizer state, progress counters and RNG states (tensors and plain
                      Python only: loaded with `torch.load(weights_only=True)`),
  meta.json           step, config, and the size and sha256 of the two files above.
It is written into a temporary folder, every file flushed and fsynced, then renamed into
place (as timm's `CheckpointSaver` does with `os.replace`), so a process killed mid-save
leaves the previous checkpoints untouched (its `.tmp-*` folder is ignored, and removed on
resume). The last `keep_last` are kept. `--resume` takes the newest checkpoint whose files
match their recorded size and hash, and says why it skips any newer one.
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
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from vitmae.errors import CheckpointError

PREFIX = "ckpt-"
TMP = ".tmp-"  # a save in progress: ignored by list_checkpoints, removed on resume
PREV = ".prev"  # a checkpoint being replaced by a newer save of the same step
FILES = ("model.safetensors", "state.pt")


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def cpu_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The (unwrapped) model's state dict as contiguous CPU tensors: what safetensors writes."""
    return {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}


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


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    """Where the checkpoint of `step` lives (every DDP rank can name it; rank 0 writes it)."""
    return Path(run_dir) / f"{PREFIX}{step:09d}"


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, state: dict,
                    config: dict, keep_last: int = 2) -> Path:
    """Write ckpt-<step>/ atomically and prune older ones; returns the folder.

    At every instant the run folder holds a complete checkpoint: a save that fails (disk full,
    killed) leaves the previous ones as they were, and a checkpoint of the same step is first
    renamed to `ckpt-<step>.prev` (still a valid checkpoint) before the new one takes its name.
    Raises CheckpointError, naming the folder and the newest checkpoint kept, if the write fails.
    """
    run_dir = Path(run_dir)
    final = checkpoint_dir(run_dir, step)
    tmp = run_dir / f"{TMP}{PREFIX}{step:09d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_file(cpu_weights(model), str(tmp / "model.safetensors"))
        torch.save(state, tmp / "state.pt")
        meta = {"step": step, "config": config,
                "files": {n: {"size": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)}
                          for n in FILES}}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        for name in (*FILES, "meta.json"):
            with open(tmp / name, "rb+") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        prev = final.with_name(final.name + PREV)
        if final.exists():  # a second save of this step (a resumed run's epoch end)
            shutil.rmtree(prev, ignore_errors=True)
            os.replace(final, prev)
        os.replace(tmp, final)
        _fsync_dir(run_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = [p.name for p in list_checkpoints(run_dir)]
        raise CheckpointError(
            f"could not write checkpoint {final} ({e}); nothing was overwritten, the run folder "
            f"keeps {', '.join(kept) or 'no checkpoint'}") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(run_dir, step, keep_last)
    return final


def _prune(run_dir: Path, step: int, keep_last: int) -> None:
    """Keep the newest `keep_last` checkpoints up to `step`. Newer ones belong to a run that
    was resumed from an older checkpoint (they failed verification) and go too."""
    ckpts = list_checkpoints(run_dir)
    current = [p for p in ckpts if _step(p) <= step and not p.name.endswith(PREV)]
    for old in [p for p in ckpts if p not in current[-keep_last:]]:
        # Rename first (atomic): a kill during the deletion then leaves a `.tmp-*` folder,
        # which is never taken for a checkpoint, instead of a half-deleted ckpt-* folder.
        doomed = run_dir / f"{TMP}{old.name}-pruned-{os.getpid()}"
        try:
            os.replace(old, doomed)
        except OSError:
            continue
        shutil.rmtree(doomed, ignore_errors=True)


def remove_partial_saves(run_dir: Path) -> list[Path]:
    """Delete the temporary folders of saves that never finished (a killed process)."""
    partial = sorted(Path(run_dir).glob(f"{TMP}{PREFIX}*"))
    for p in partial:
        shutil.rmtree(p, ignore_errors=True)
    return partial


def _step(ckpt: Path) -> int:
    return int(ckpt.name[len(PREFIX):].removesuffix(PREV))


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, oldest first (`ckpt-N.prev` just before `ckpt-N`)."""
    found = [p for p in Path(run_dir).glob(f"{PREFIX}*")
             if p.is_dir() and p.name[len(PREFIX):].removesuffix(PREV).isdigit()]
    return sorted(found, key=lambda p: (_step(p), not p.name.endswith(PREV)))


def verify_checkpoint(ckpt: Path) -> None:
    """Raise CheckpointError unless every file is present with its recorded size and hash."""
    meta_path = ckpt / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        files = {n: (int(i["size"]), str(i["sha256"])) for n, i in meta["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{meta_path}: missing, unreadable or malformed "
                              f"({type(e).__name__}: {e})") from None
    if set(files) != set(FILES):
        raise CheckpointError(f"{meta_path}: expected entries for {', '.join(FILES)}, "
                              f"found {', '.join(files) or 'none'}")
    for name, (size, sha) in files.items():
        path = ckpt / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
        if path.stat().st_size != size:
            raise CheckpointError(f"{path}: size {path.stat().st_size} bytes, expected "
                                  f"{size} (truncated or overwritten)")
        if _sha256(path) != sha:
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
    # truncated or not a torch file; a malformed pickle stream fails inside the unpickler as an
    # IndexError (its stack) or KeyError (its memo) too
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError) as e:
        raise CheckpointError(f"{path}: not a readable torch file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None


WRAPPERS = ("model", "state_dict", "module")  # keys a torch file may keep its state dict under


def read_state_file(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, safetensors metadata or {}) of one weights file: safetensors (known by its
    suffix or its header, whatever the name), or a torch file loaded weights only, its state
    dict bare or under 'model' / 'state_dict' / 'module' (official MAE files keep it under
    'model'), DDP's 'module.' prefix removed. The one reader of weights files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    with open(path, "rb") as f:
        head = f.read(16)  # safetensors: 8-byte header length, then the JSON header
    if path.suffix == ".safetensors" or (len(head) >= 9 and head[8:9] == b"{"):
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    obj = safe_torch_load(path)
    for key in WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (names -> tensors), bare or under "
                              f"'model' / 'state_dict'; found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}, {}


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a weights file (`read_state_file`), a checkpoint folder, or a run
    folder (its newest good checkpoint)."""
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
    return read_state_file(path)[0]

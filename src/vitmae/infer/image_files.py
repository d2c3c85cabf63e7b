"""The images (or volumes) a user names on the command line: listing them and reading them in
batches.

`list_images(args)`: a file is taken as given (whatever its name: one that is not an image is
reported when it is decoded), a folder is searched recursively for files with an image
extension (with `volumes=True`: `.npy`, `.nii`, `.nii.gz`), a glob pattern (`*`, `?`, `[...]`,
`**`) is expanded as a shell would and each match taken as above. Everything is sorted within
its argument and listed once. An argument that names nothing, or a folder without images, is
an error before any work starts. `image_batches` reads and preprocesses them batch by batch
with a progress bar on stderr; a file that cannot be read is named on stderr, skipped and
kept in `failed`.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vitmae.data.checks import BadDataError
from vitmae.data.folder import IMG_EXTENSIONS
from vitmae.data.volume_io import VOLUME_EXTENSIONS
from vitmae.errors import UsageError
from vitmae.infer.preprocess import Preprocess


def _expand(arg: str, extensions: tuple[str, ...], noun: str) -> list[Path]:
    path = Path(arg)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*")
                       if p.is_file() and p.name.lower().endswith(extensions))
        if not found:
            raise FileNotFoundError(f"{arg}: no {noun} in this folder or below it (looked for "
                                    f"{' '.join(extensions)})")
        return found
    if path.is_file():
        return [path]
    if any(c in arg for c in "*?["):
        matches = sorted(glob.glob(arg, recursive=True))
        if matches:
            return [p for m in matches for p in _expand(m, extensions, noun)]
    raise FileNotFoundError(f"{arg}: no such file, folder or matching pattern")


def list_images(args: Sequence[str], volumes: bool = False) -> list[Path]:
    """Files, folders (recursive) and glob patterns -> image (or volume) paths, each once, in
    order."""
    extensions, noun = (VOLUME_EXTENSIONS, "volumes") if volumes else (IMG_EXTENSIONS, "images")
    seen: dict[Path, None] = {}
    for arg in args:
        for p in _expand(str(arg), tuple(extensions), noun):
            seen.setdefault(p, None)
    return list(seen)


@dataclass
class Batch:
    paths: list[Path]
    # as read, at their original size (for masks and overlays): PIL images, or (D, H, W)
    # arrays for volumes
    images: list[Image.Image | np.ndarray]
    x: torch.Tensor  # (B, C, S, S), or (B, 1, S, S, S) for volumes: the model's input


def image_batches(paths: Sequence[Path], preprocess: Preprocess, batch_size: int,
                  failed: list[tuple[Path, str]]) -> Iterator[Batch]:
    """Read `paths` in order into batches of up to `batch_size` readable items; each
    unreadable file is named on stderr and appended to `failed` as (path, reason)."""
    if batch_size < 1:
        raise UsageError(f"--batch-size: must be at least 1, got {batch_size}")
    bar = tqdm(total=len(paths), unit="item", file=sys.stderr, disable=None, leave=False)
    todo: list[tuple[Path, Image.Image | np.ndarray]] = []
    try:
        for i, path in enumerate(paths):
            try:
                todo.append((path, preprocess.read(path)))
            except BadDataError as e:  # an image that cannot be decoded, a bad volume
                failed.append((path, str(e)))
                tqdm.write(f"skipped {path}: {e}", file=sys.stderr)
                bar.update(1)
            if todo and (len(todo) == batch_size or i == len(paths) - 1):
                x = torch.stack([preprocess(img) for _, img in todo])  # (B, C, S[, S], S)
                yield Batch([p for p, _ in todo], [img for _, img in todo], x)
                bar.update(len(todo))
                todo = []
    finally:
        bar.close()


def summary(command: str, done: int, failed: list[tuple[Path, str]],
            noun: str = "images") -> str:
    """The final line: how many images (or volumes) were done and which could not be read."""
    line = f"vitmae {command}: {done} {noun}, {len(failed)} could not be read"
    if failed:
        names = ", ".join(str(p) for p, _ in failed[:5])
        line += f" ({names}{', ...' if len(failed) > 5 else ''})"
    return line

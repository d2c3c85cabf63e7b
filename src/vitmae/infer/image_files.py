"""The images a user names on the command line: listing them and decoding them in batches.

`list_images(args)`: a file is taken as given (whatever its name: one that is not an image is
reported when it is decoded), a folder is searched recursively for files with an image
extension, a glob pattern (`*`, `?`, `[...]`, `**`) is expanded as a shell would and each
match taken as above. Everything is sorted within its argument and listed once. An argument
that names nothing, or a folder without images, is an error before any work starts.
`image_batches` decodes and preprocesses them batch by batch with a progress bar on stderr;
a file that cannot be decoded is named on stderr, skipped and kept in `failed`.
"""

from __future__ import annotations

import glob
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from vitmae.data.checks import BadImageError
from vitmae.data.folder import IMG_EXTENSIONS
from vitmae.errors import UsageError
from vitmae.infer.preprocess import Preprocess


def _expand(arg: str) -> list[Path]:
    path = Path(arg)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not found:
            raise FileNotFoundError(f"{arg}: no images in this folder or below it (looked for "
                                    f"{' '.join(IMG_EXTENSIONS)})")
        return found
    if path.is_file():
        return [path]
    if any(c in arg for c in "*?["):
        matches = sorted(glob.glob(arg, recursive=True))
        if matches:
            return [p for m in matches for p in _expand(m)]
    raise FileNotFoundError(f"{arg}: no such file, folder or matching pattern")


def list_images(args: Sequence[str]) -> list[Path]:
    """Files, folders (recursive) and glob patterns -> image paths, each once, in order."""
    seen: dict[Path, None] = {}
    for arg in args:
        for p in _expand(str(arg)):
            seen.setdefault(p, None)
    return list(seen)


@dataclass
class Batch:
    paths: list[Path]
    images: list[Image.Image]  # as decoded, at their original size (for masks and overlays)
    x: torch.Tensor  # (B, C, S, S): the model's input


def image_batches(paths: Sequence[Path], preprocess: Preprocess, batch_size: int,
                  failed: list[tuple[Path, str]]) -> Iterator[Batch]:
    """Decode `paths` in order into batches of up to `batch_size` readable images; each
    unreadable file is named on stderr and appended to `failed` as (path, reason)."""
    if batch_size < 1:
        raise UsageError(f"--batch-size: must be at least 1, got {batch_size}")
    bar = tqdm(total=len(paths), unit="img", file=sys.stderr, disable=None, leave=False)
    todo: list[tuple[Path, Image.Image]] = []
    try:
        for i, path in enumerate(paths):
            try:
                todo.append((path, preprocess.read(path)))
            except BadImageError as e:
                failed.append((path, str(e)))
                tqdm.write(f"skipped {path}: {e}", file=sys.stderr)
                bar.update(1)
            if todo and (len(todo) == batch_size or i == len(paths) - 1):
                x = torch.stack([preprocess(img) for _, img in todo])  # (B, C, S, S)
                yield Batch([p for p, _ in todo], [img for _, img in todo], x)
                bar.update(len(todo))
                todo = []
    finally:
        bar.close()


def summary(command: str, done: int, failed: list[tuple[Path, str]]) -> str:
    """The final line: how many images were done and which could not be read."""
    line = f"vitmae {command}: {done} images, {len(failed)} could not be read"
    if failed:
        names = ", ".join(str(p) for p, _ in failed[:5])
        line += f" ({names}{', ...' if len(failed) > 5 else ''})"
    return line

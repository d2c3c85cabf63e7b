"""Bad data: decoding untrusted files, checking labels, and recording the files skipped.

Every failure names the file and what was expected. `open_image` turns any Pillow mode into
RGB or L (16- and 32-bit grayscale are scaled to 8 bits, not clipped to white as
`Image.convert` does); anything Pillow cannot decode raises `BadImageError`, an OSError.
`safe_pickle_load` reads pickled data files (CIFAR batches) with an allow-list of globals,
so that a crafted file cannot run code. `SkipLog` collects what `data.skip_bad` skipped,
across DataLoader worker processes.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import weakref
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image


class BadImageError(OSError):
    """An image file that cannot be decoded."""


# 16-bit modes have a known range; "I" (32-bit) and "F" (float) do not, see `_to_8bit`.
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def open_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Decode `path` completely and convert it to `mode` ("RGB" or "L").

    Alpha is dropped (as torchvision's ImageFolder does); palette, CMYK, 1-bit and
    grayscale images are converted. Raises BadImageError naming the file otherwise.
    """
    try:
        with Image.open(path) as im:
            im.load()  # Image.open only reads the header; truncation shows up here
            return _convert(im, mode)
    except MemoryError:
        raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error,
        # DecompressionBombError, ... on hostile input; all mean "not a usable image"
        raise BadImageError(f"cannot read image {path}: {type(e).__name__}: {e} (expected an "
                            f"image file that Pillow can decode)") from e


def _convert(im: Image.Image, mode: str) -> Image.Image:
    if im.mode in WIDE_MODES:
        im = _to_8bit(im)
    elif im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # Pillow's advice for palette transparency
    return im if im.mode == mode else im.convert(mode)


def _to_8bit(im: Image.Image) -> Image.Image:
    """Wide grayscale -> 'L'. 16-bit: x / 257 (65535 -> 255). 32-bit integer: the same when
    any value exceeds 255 (Pillow opens 16-bit PNGs as 'I'), else as is. Float: x * 255 when
    all values are in [0, 1], else clipped to [0, 255]."""
    a = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
        a = a / 257.0
    elif im.mode == "F" and a.size and np.nanmin(a) >= 0 and np.nanmax(a) <= 1:
        a = a * 255.0
    a = np.nan_to_num(a, nan=0.0)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def check_labels(labels: np.ndarray, num_classes: int, source: str | Path) -> None:
    """Raise ValueError naming `source` if any label is outside 0..num_classes-1."""
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{source}: label {labels[i]} at position {i} is outside the class "
                         f"range 0..{num_classes - 1} ({bad.size} such labels)")


# What a CIFAR python batch needs: numpy arrays, and bytes as Python 3 pickles them.
PICKLE_GLOBALS = {("numpy.core.multiarray", "_reconstruct"),
                  ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused to load global '{module}.{name}': a data file may only hold arrays, "
                f"numbers, strings, lists and dicts (anything else could run code)")
        return super().find_class(module, name)


def safe_pickle_load(f: IO[bytes], encoding: str = "ASCII") -> Any:
    """pickle.load restricted to plain data and numpy arrays."""
    return _DataUnpickler(f, encoding=encoding).load()


class SkipLog:
    """Files skipped under `data.skip_bad`, seen by the main process and its DataLoader
    workers alike: a worker is another process, so a list attribute would stay there. Lines
    `path<TAB>reason` are appended to a temporary file (small appends are atomic on POSIX)
    that the main process reads."""

    def __init__(self):
        fd, name = tempfile.mkstemp(prefix="vitmae-skipped-", suffix=".tsv")
        os.close(fd)
        self.path = name
        weakref.finalize(self, _remove, name)  # in the creating process only

    def add(self, path: str | Path, reason: str) -> None:
        line = f"{path}\t{' '.join(reason.split())}\n"
        with open(self.path, "a") as f:
            f.write(line)

    def seen(self) -> list[tuple[str, str]]:
        """(path, reason) of every skipped file, each once, in the order first skipped."""
        try:
            with open(self.path) as f:
                rows = [line.rstrip("\n").split("\t", 1) for line in f if "\t" in line]
        except FileNotFoundError:
            return []
        first: dict[str, str] = {}
        for p, r in rows:
            first.setdefault(p, r)
        return list(first.items())

    def take(self) -> list[tuple[str, str]]:
        """`seen()`, then forget them (called at the end of each epoch)."""
        rows = self.seen()
        with open(self.path, "w"):
            pass
        return rows


def _remove(name: str) -> None:
    try:
        os.remove(name)
    except OSError:
        pass

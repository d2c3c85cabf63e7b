"""Bad data: decoding untrusted files and checking labels and masks.

Every failure names the file and what was expected. A bad item raises a `BadDataError`
(its `path` the file at fault), the one kind of error that `data.skip_bad` skips
(`vitmae.data.skip`) and `vitmae check-data` reports: `MissingFileError`, `BadImageError`
(anything Pillow cannot decode), `BadMaskError` and `BadLabelError`. `open_image` turns any
Pillow mode into RGB or L (16- and 32-bit grayscale are scaled to 8 bits, not clipped to
white as `Image.convert` does); `read_mask_array` reads an index or palette PNG and
`check_mask` its values. `safe_pickle_load` reads pickled data files (CIFAR batches) with an
allow-list of globals, so that a crafted file cannot run code.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from vitmae.data.palette import VOID
from vitmae.errors import UserError


class BadDataError(UserError, ValueError):
    """One item of a data set is unusable; `path` names the file at fault."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class MissingFileError(BadDataError, FileNotFoundError):
    """A file that an item needs is not there."""


class BadImageError(BadDataError, OSError):
    """An image file that cannot be decoded."""


class BadMaskError(BadDataError):
    """A segmentation mask of the wrong kind, size or values."""


class BadLabelError(BadDataError):
    """A label or annotation file with a class outside the data set's classes."""


MASK_MODES = ("P", "L", "1", "I;16", "I")  # palette (index = class), 8/1/16-bit index images


# 16-bit modes have a known range; "I" (32-bit) and "F" (float) do not, see `_to_8bit`.
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def open_image(path: str | Path, mode: str = "RGB") -> Image.Image:
    """Decode `path` completely and convert it to `mode` ("RGB" or "L").

    Alpha is dropped (as torchvision's ImageFolder does); palette, CMYK, 1-bit and
    grayscale images are converted. Raises MissingFileError or BadImageError naming the
    file otherwise.
    """
    with _decoded(path) as im:
        try:
            return _convert(im, mode)
        except (ValueError, OSError) as e:  # a mode Pillow cannot convert (e.g. LAB)
            raise BadImageError(f"cannot convert image {path} from mode {im.mode} to {mode}: "
                                f"{e}", path) from e


@contextmanager
def _decoded(path: str | Path) -> Iterator[Image.Image]:
    """The fully decoded Pillow image of `path`; MissingFileError or BadImageError naming
    the file."""
    try:
        im = Image.open(path)
        im.load()  # Image.open only reads the header; truncation shows up here
    except MemoryError:
        raise
    except FileNotFoundError as e:
        raise MissingFileError(f"{path}: no such file", path) from e
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error,
        # DecompressionBombError, ... on hostile input; all mean "not a usable image"
        raise BadImageError(f"cannot read image {path}: {type(e).__name__}: {e} (expected an "
                            f"image file that Pillow can decode)", path) from e
    with im:
        yield im


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


def read_mask_array(path: str | Path) -> np.ndarray:
    """An index PNG (grey 'L', 1-bit or 16-bit) or palette PNG ('P': the palette index is
    the class) -> (H, W) integer class indices (uint8 for 'P' and 'L'), unchecked;
    BadMaskError for a colour image."""
    with _decoded(path) as im:
        if im.mode not in MASK_MODES:
            raise BadMaskError(f"{path}: a mask must be a palette (P) or grey index (L) PNG "
                               f"whose values are the classes, found mode {im.mode}", path)
        return np.asarray(im)


def mask_values(mask: np.ndarray) -> np.ndarray:
    """The distinct values of an integer (H, W) mask, sorted."""
    if mask.dtype == np.uint8:  # a histogram, not np.unique's sort: this runs on every read
        return np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    return np.unique(mask).astype(np.int64)


def check_mask(mask: np.ndarray, num_classes: int, path: str | Path) -> None:
    """BadMaskError naming `path`, the bad values and the valid range if any value of `mask`
    is neither a class 0..num_classes-1 nor VOID."""
    values = mask_values(mask)
    bad = values[((values < 0) | (values >= num_classes)) & (values != VOID)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        raise BadMaskError(f"{path}: mask values {shown} are outside the classes "
                           f"0..{num_classes - 1} (and {VOID}, ignored)", path)


def check_labels(labels: np.ndarray, num_classes: int, source: str | Path) -> None:
    """Raise ValueError naming `source` if any label is outside 0..num_classes-1."""
    labels = np.asarray(labels)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise BadLabelError(f"{source}: label {labels[i]} at position {i} is outside the class "
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

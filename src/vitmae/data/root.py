"""Where the data sets live, and the error raised when one is not there.

The data root is `data.root`, else `$VITMAE_DATA`, else `./data` (torchvision's layout
below it: `MNIST/raw/`, `FashionMNIST/raw/`, `cifar-10-batches-py/`). Nothing is ever
written below the root except by an explicit `data.download=true`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from vitmae.config import DataConfig


def data_root(cfg: DataConfig) -> Path:
    """cfg.root, else $VITMAE_DATA, else ./data."""
    root = cfg.root or os.environ.get("VITMAE_DATA") or "data"
    return Path(root).expanduser()


def missing_data_error(what: str, looked: Iterable[Path], download: bool) -> FileNotFoundError:
    """A FileNotFoundError that lists every path looked at and says how to get the files."""
    paths = "\n".join(f"  {Path(p).resolve()}" for p in looked)
    how = ("put the files there, or point data.root (or the VITMAE_DATA environment variable) "
           "at the folder that holds them")
    if download:
        how += ", or pass data.download=true to fetch them with torchvision's downloader "
        how += "(needs internet)"
    return FileNotFoundError(f"{what} not found; looked for:\n{paths}\nTo fix: {how}.")

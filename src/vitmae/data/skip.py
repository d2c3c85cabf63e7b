"""`data.skip_bad` for every data set: one wrapper, applied by `build_dataset`.

A data set reports a bad item by raising a `BadDataError` that names the file
(`vitmae.data.checks`). `SkipBad` passes every other item through. On a bad one it either
re-raises, adding how to skip such files, or (with `data.skip_bad=true`) returns the next
good item instead, as the image folder always did, and records the file in a `SkipLog`.
The engine takes that log at the end of each epoch (`take_skipped`), names each file the
first time and writes the count to `metrics.jsonl`.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from pathlib import Path

from torch.utils.data import Dataset

from vitmae.data.checks import BadDataError


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


class SkipBad(Dataset):
    """`dataset` with its bad items skipped (skip=True) or re-raised with a hint; the
    dataset's attributes (classes, mean, ids, ...) read through."""

    def __init__(self, dataset: Dataset, skip: bool):
        self.dataset = dataset
        self.skipped = SkipLog() if skip else None

    def __getattr__(self, name: str):
        # guard: during unpickling (DataLoader workers) `dataset` is not yet set
        if name.startswith("__") or name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        n = len(self.dataset)
        if not -n <= i < n:  # as a sequence: `for item in dataset` stops at the end
            raise IndexError(f"item {i} of a data set of {n}")
        for j in range(n):
            try:
                return self.dataset[(i + j) % n]
            except BadDataError as e:
                if self.skipped is None:
                    raise type(e)(f"{e}; pass data.skip_bad=true to skip bad files, or run "
                                  f"`vitmae check-data` to list them all", e.path) from e
                self.skipped.add(e.path or f"item {(i + j) % n}", str(e))
        raise BadDataError(f"no usable item in the data set: all {n} were skipped "
                           f"({len(self.bad_files)} bad files, e.g. {self.bad_files[:3]})")

    @property
    def bad_files(self) -> list[str]:
        """Every file skipped so far (by any process), each once."""
        return [p for p, _ in self.skipped.seen()] if self.skipped else []

    def take_skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of the files skipped since the last call."""
        return self.skipped.take() if self.skipped else []

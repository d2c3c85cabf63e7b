"""`vitmae check-data`: read every item of a preset's training and evaluation splits once,
before a long run, and report what is wrong with the data.

Each item goes through the data set's own reading path (evaluation transform), in parallel
DataLoader workers: every error that a run would stop at (or skip under `data.skip_bad`) is
collected instead, with its file. The report gives per split the number of items, the
classes and how many items hold each, the image sizes and modes, and then every problem:
missing and unreadable files (for VOC, each listed id without a photo), masks and labels
with values outside the classes or of the wrong size, classes without items (an empty or
missing class folder), and files found in both splits (same content hash).
`run_check_data` prints it; the command exits 0 when it is clean and 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import sys
from collections import Counter
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vitmae.config import Config
from vitmae.data.checks import BadDataError
from vitmae.data.palette import VOID
from vitmae.data.registry import build_plain


@dataclass
class Item:
    """What one item showed: `labels` are the classes it holds (its class, its positive
    labels, or the classes in its mask); `error` is (kind, file, message) if it is bad."""

    name: str  # its image file, or "item <i>" for data held in memory
    digest: str | None  # content hash of the image file (or of the image tensor)
    size: tuple[int, int] | None  # (W, H) of the image
    mode: str | None
    labels: list[int] = field(default_factory=list)
    target: str = "none"  # class | multi-label | mask | none
    error: tuple[str, str, str] | None = None


class Probe(Dataset):
    """Item i of `dataset` -> its `Item` report."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Item:
        files = self.dataset.files(i) if hasattr(self.dataset, "files") else None
        item = Item(name=str(files[0]) if files else f"item {i}", digest=None, size=None,
                    mode=None)
        if files:
            describe_file(item, files[0])
        try:
            sample = self.dataset[i]
        except BadDataError as e:
            item.error = (type(e).__name__, e.path or item.name, str(e))
            return item
        if not files:  # in memory: the image tensor stands for the file
            img = sample[0]  # (C, H, W)
            item.digest = hashlib.blake2b(img.numpy().tobytes(), digest_size=16).hexdigest()
            item.size, item.mode = (img.shape[-1], img.shape[-2]), f"{img.shape[0]}-channel"
        item.target, item.labels = read_labels(sample[1])
        return item


def describe_file(item: Item, path) -> None:
    """Hash, size and mode of an image file, when it can be read (else the item's own
    reading reports it)."""
    try:
        data = path.read_bytes()
        item.digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        with Image.open(io.BytesIO(data)) as im:
            item.size, item.mode = im.size, im.mode
    except Exception:  # unreadable or missing: the data set's own read names it
        pass


def read_labels(target) -> tuple[str, list[int]]:
    """A class index, a multi-hot (K,) vector or an (H, W) mask -> (kind, classes held)."""
    if isinstance(target, int) or (torch.is_tensor(target) and target.dim() == 0):
        return "class", [int(target)]
    if target.dim() == 1:
        return "multi-label", target.nonzero().flatten().tolist()
    values = target.unique().tolist()
    return "mask", [v for v in values if v != VOID]


def _as_list(batch: list) -> list:
    return batch


@dataclass
class SplitReport:
    split: str
    classes: list[str]
    items: list[Item]
    folder: str | None = None  # an image folder's split folder (class folders below it)

    def counts(self) -> list[int]:
        """(K,) items holding each class."""
        c = Counter(k for it in self.items for k in it.labels)
        return [c[k] for k in range(len(self.classes))]

    def target(self) -> str:
        return next((it.target for it in self.items if it.error is None), "none")


# headings of the report's problem lists, in the order printed
HEADINGS = {"MissingFileError": "missing files", "BadImageError": "unreadable files",
            "BadMaskError": "bad masks", "BadLabelError": "bad labels",
            "BadDataError": "bad items", "empty": "classes without items",
            "classes": "classes that differ between the splits",
            "duplicate": "files in both splits (same content)"}


def probe_split(data, split: str, workers: int) -> SplitReport:
    """Read every item of `split` once, in `workers` processes, with a progress bar."""
    ds = build_plain(data, split, train=False)
    loader = DataLoader(Probe(ds), batch_size=16, num_workers=workers, collate_fn=_as_list)
    items: list[Item] = []
    with tqdm(total=len(ds), desc=f"reading {split}", file=sys.stderr, mininterval=1.0,
              dynamic_ncols=True) as bar:
        for batch in loader:
            items += batch
            bar.update(len(batch))
    classes = [str(c) for c in getattr(ds, "classes", None) or range(ds.num_classes)]
    folder = getattr(ds, "folder", None)
    return SplitReport(split, classes, items, str(folder) if folder else None)


def check_data(cfg: Config, workers: int = 0) -> tuple[list[SplitReport], dict[str, list[str]]]:
    """-> the reports of cfg.data's training and evaluation splits, and the problems found
    under each heading of HEADINGS (empty lists left out)."""
    # built leniently, so that every bad file is reported by the item that reads it
    data = dataclasses.replace(cfg.data, skip_bad=True, allow_class_mismatch=True, subset=None)
    splits = [probe_split(data, s, workers)
              for s in dict.fromkeys((data.train_split, data.val_split))]
    problems: dict[str, list[str]] = {k: [] for k in HEADINGS}
    for s in splits:
        for it in s.items:
            if it.error:
                problems.setdefault(it.error[0], []).append(f"{s.split}: {it.error[2]}")
        if s.target() == "class":  # in an image folder: an empty or missing class folder
            problems["empty"] += [
                f"{s.split}: class '{c}' has no items" + (f" ({s.folder}/{c})" if s.folder
                                                          else "")
                for c, n in zip(s.classes, s.counts(), strict=True) if n == 0]
    if len(splits) == 2:
        a, b = splits
        if a.classes != b.classes:
            problems["classes"].append(f"{a.split}: {a.classes}; {b.split}: {b.classes}")
        seen = {it.digest: it.name for it in a.items if it.digest}
        problems["duplicate"] += [f"{it.name} ({b.split}) = {seen[it.digest]} ({a.split})"
                                  for it in b.items if it.digest in seen]
    return splits, {k: v for k, v in problems.items() if v}


def format_split(s: SplitReport) -> list[str]:
    """The summary lines of one split: counts, classes, image sizes and modes."""
    good = [it for it in s.items if it.error is None]
    what = {"multi-label": "items with each label",
            "mask": "items with each class in their mask"}.get(s.target(), "items per class")
    counts = ", ".join(f"{c} {n}" for c, n in zip(s.classes, s.counts(), strict=True))
    lines = [f"split '{s.split}': {len(s.items)} items, {len(good)} read without error, "
             f"{len(s.classes)} classes", f"  {what}: {counts}"]
    sizes = Counter(it.size for it in good if it.size)
    if sizes:
        common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(3))
        small = min(sizes, key=lambda wh: wh[0] * wh[1])
        large = max(sizes, key=lambda wh: wh[0] * wh[1])
        lines.append(f"  image sizes (W x H): {len(sizes)} distinct, most common {common}; "
                     f"smallest {small[0]}x{small[1]}, largest {large[0]}x{large[1]}")
    modes = Counter(it.mode for it in good if it.mode)
    if modes:
        lines.append("  image modes: " + ", ".join(f"{m} {n}" for m, n in modes.most_common()))
    return lines


def run_check_data(cfg: Config, workers: int | None = None, out=print) -> int:
    """Print the report of `check_data`; -> the exit code: 0 clean, 1 problems found."""
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    splits, problems = check_data(cfg, workers)
    out(f"check-data: data set {cfg.data.dataset}, splits "
        f"{', '.join(repr(s.split) for s in splits)}")
    for s in splits:
        for line in format_split(s):
            out(line)
    if not problems:
        out("no problems found")
        return 0
    for kind, lines in problems.items():
        out(f"{HEADINGS.get(kind, kind)} ({len(lines)}):")
        for line in lines:
            out(f"  {line}")
    total = sum(map(len, problems.values()))
    out(f"{total} problems: " + ", ".join(f"{len(v)} {HEADINGS.get(k, k)}"
                                          for k, v in problems.items()))
    return 1

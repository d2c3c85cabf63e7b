"""CIFAR-10 from the python pickle batches (Krizhevsky, 2009), held in memory as uint8.

`<root>/cifar-10-batches-py/`: `data_batch_1..5` (train, 10,000 each), `test_batch`,
`batches.meta` (class names). Each batch holds `data` (N, 3072) uint8, R then G then B
planes of 32x32, and `labels`; labels outside 0..9 are refused, naming the file. Read with
an allow-list unpickler (`data.checks`: a crafted file cannot run code), not torchvision
(its md5 check refuses copies whose `filenames` entries differ). Missing train batches are
skipped with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from vitmae.config import DataConfig
from vitmae.data.checks import BadDataError, check_labels, safe_pickle_load
from vitmae.data.registry import check_split, norm_stats, register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.tensor_dataset import ImageTensorDataset
from vitmae.data.transforms import cifar_transform

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{k}" for k in range(1, 6))
TEST_BATCHES = ("test_batch",)
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def read_pickle(path: Path) -> dict:
    """Unpickle a CIFAR python file (arrays and plain data only); ValueError naming it if it
    is not one."""
    try:
        with open(path, "rb") as f:
            return safe_pickle_load(f, encoding="latin1")  # Python-2 str keys -> str
    except FileNotFoundError:
        raise
    except Exception as e:  # pickle raises many types on corrupt input
        raise BadDataError(f"{path}: not a readable CIFAR python pickle ({e!r})") from e


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """-> data (N, 3, 32, 32) uint8, labels (N,) int64."""
    d = read_pickle(path)
    if not isinstance(d, dict) or "data" not in d or "labels" not in d:
        raise BadDataError(f"{path}: expected a dict with 'data' and 'labels'")
    data, labels = np.asarray(d["data"], dtype=np.uint8), np.asarray(d["labels"], np.int64)
    if data.ndim != 2 or data.shape != (len(labels), 3072):
        raise BadDataError(f"{path}: expected data of shape ({len(labels)}, 3072), "
                           f"found {data.shape}")
    check_labels(labels, len(CLASSES), path)
    return data.reshape(-1, 3, 32, 32), labels  # (N, 3072) -> (N, 3, 32, 32), RGB planes


def download(root: Path) -> None:
    """torchvision's downloader extracts `<root>/cifar-10-batches-py/` (needs internet)."""
    from torchvision import datasets

    datasets.CIFAR10(str(root), train=True, download=True)


def class_names(folder: Path) -> list[str]:
    meta = folder / "batches.meta"
    return list(read_pickle(meta)["label_names"]) if meta.is_file() else list(CLASSES)


@register_dataset("cifar10")
def build_cifar10(cfg: DataConfig, split: str, train: bool) -> ImageTensorDataset:
    check_split(split, ("train", "test"), "cifar10")
    root = data_root(cfg)
    folder = root / FOLDER
    names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    missing = [n for n in names if not (folder / n).is_file()]
    if missing and cfg.download:
        download(root)
        missing = [n for n in names if not (folder / n).is_file()]
    if len(missing) == len(names):
        raise missing_data_error(f"CIFAR-10 '{split}' batches", [folder / n for n in names],
                                 download=True)
    if missing:
        warnings.warn(f"CIFAR-10: {', '.join(missing)} not found in {folder}; the '{split}' "
                      f"split uses only the other {len(names) - len(missing)} batches",
                      stacklevel=3)  # point at the build_dataset caller
    batches = [read_batch(folder / n) for n in names if n not in missing]
    images = torch.from_numpy(np.concatenate([b[0] for b in batches]))  # (N, 3, 32, 32)
    labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))  # (N,)
    mean, std = norm_stats(cfg, CIFAR10_MEAN, CIFAR10_STD)
    return ImageTensorDataset(images, labels, cifar_transform(cfg.img_size, mean, std, train),
                              classes=class_names(folder), mean=mean, std=std)

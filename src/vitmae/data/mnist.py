"""MNIST and Fashion-MNIST from their IDX files, held in memory as uint8 tensors.

Looks in torchvision's layout, `<root>/MNIST/raw/` and `<root>/FashionMNIST/raw/`, for
`{train,t10k}-{images-idx3,labels-idx1}-ubyte` with or without `.gz` (read in place: the
root may be read-only); Fashion-MNIST also in the Debian package's folder
(`apt-get install dataset-fashion-mnist`). Normalization constants as in torchvision's
MNIST examples (0.1307, 0.3081) and the Fashion-MNIST training-set statistics.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitmae.config import DataConfig
from vitmae.data.checks import BadDataError
from vitmae.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from vitmae.data.registry import check_split, norm_stats, register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.tensor_dataset import ImageTensorDataset
from vitmae.data.transforms import mnist_transform

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
VARIANTS = {  # name -> (folder under the root, extra folders, classes, mean, std)
    "mnist": ("MNIST", (), [str(k) for k in range(10)], (0.1307,), (0.3081,)),
    "fashion_mnist": ("FashionMNIST", (DEBIAN_FASHION_DIR,), FASHION_CLASSES,
                      (0.2860,), (0.3530,)),
}


def candidates(folder: Path, name: str) -> list[Path]:
    return [folder / name, folder / f"{name}.gz"]


def find_split_files(folders: list[Path], split: str) -> tuple[Path, Path] | None:
    """(images, labels) paths from the first folder that holds both, else None."""
    for folder in folders:
        found = [next((p for p in candidates(folder, n) if p.is_file()), None)
                 for n in FILES[split]]
        if all(found):
            return found[0], found[1]
    return None


def download(name: str, root: Path) -> None:
    """torchvision's downloader writes `<root>/<MNIST|FashionMNIST>/raw/` (needs internet)."""
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    for train in (True, False):
        cls(str(root), train=train, download=True)


def load_idx_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """-> images (N, 1, 28, 28) uint8, labels (N,) int64; ValueError naming a bad file."""
    images = read_idx(images_path, IMAGES_MAGIC)  # (N, 28, 28)
    labels = read_idx(labels_path, LABELS_MAGIC)  # (N,)
    if images.shape[1:] != (28, 28):
        raise BadDataError(f"{images_path}: expected 28x28 images, found {images.shape[1:]}")
    if len(labels) != len(images):
        raise BadDataError(f"{labels_path}: expected {len(images)} labels (as many as images "
                           f"in {images_path.name}), found {len(labels)}")
    if len(labels) and labels.max() > 9:
        raise BadDataError(f"{labels_path}: expected labels 0..9, found {labels.max()}")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype("int64"))


def build_idx_dataset(name: str, cfg: DataConfig, split: str, train: bool) -> ImageTensorDataset:
    check_split(split, tuple(FILES), name)
    sub, extra, classes, mean, std = VARIANTS[name]
    mean, std = norm_stats(cfg, mean, std)
    root = data_root(cfg)
    folders = [root / sub / "raw", *extra]
    paths = find_split_files(folders, split)
    if paths is None and cfg.download:
        download(name, root)
        paths = find_split_files(folders, split)
    if paths is None:
        looked = [p for f in folders for n in FILES[split] for p in candidates(f, n)]
        raise missing_data_error(f"{name} '{split}' files", looked, download=True)
    images, labels = load_idx_pair(*paths)
    return ImageTensorDataset(images, labels, mnist_transform(cfg.img_size, mean, std, train),
                              classes=classes, mean=mean, std=std)


@register_dataset("mnist")
def build_mnist(cfg: DataConfig, split: str, train: bool) -> ImageTensorDataset:
    return build_idx_dataset("mnist", cfg, split, train)


@register_dataset("fashion_mnist")
def build_fashion_mnist(cfg: DataConfig, split: str, train: bool) -> ImageTensorDataset:
    return build_idx_dataset("fashion_mnist", cfg, split, train)

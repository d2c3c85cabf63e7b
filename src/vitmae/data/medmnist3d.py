"""MedMNIST 3-D (Yang et al., Scientific Data 2023): AdrenalMNIST3D and VesselMNIST3D.

The official `.npz` files (`adrenalmnist3d.npz`, `adrenalmnist3d_64.npz`,
`vesselmnist3d.npz`, ...) under `<root>/medmnist3d/` or `<root>/`: keys
`{train,val,test}_{images,labels}`, volumes uint8 (N, D, H, W) at 28^3 or 64^3, labels
uint8 (N, 1), binary. `data.medmnist3d.name` picks the set and `data.medmnist3d.size` the
file; items are (1, S, S, S) float32 volumes at S = data.img_size (resized when it differs)
normalised with the training split's voxel mean and std, augmented as
`vitmae.data.volume_transforms` says. MedMNIST's protocol: select the epoch by validation
AUC (data.val_split=val) and report test AUC and ACC (finetune.test_split=test).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vitmae.config import DataConfig
from vitmae.data.checks import BadDataError, check_labels
from vitmae.data.registry import check_split, norm_stats, register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.volume_transforms import VolumeTransform

# class names from MedMNIST's INFO: label 0, label 1
CLASSES = {"adrenal": ["normal", "hyperplasia"], "vessel": ["vessel", "aneurysm"]}
SPLITS = ("train", "val", "test")


class VolumeTensorDataset(Dataset):
    """volumes: (N, D, H, W) uint8 in memory; targets: (N,) class indices. Items
    (transform(volume) (1, S, S, S) float32, class index)."""

    spatial_dims = 3  # the model must be a 3-D one (model.spatial_dims=3)

    def __init__(self, volumes: Tensor, targets: Tensor, transform: Callable[[Tensor], Tensor],
                 classes: list[str], mean: tuple, std: tuple):
        if volumes.dim() != 4 or len(volumes) != len(targets):
            raise ValueError(f"expected volumes (N, D, H, W) and N targets, got "
                             f"{tuple(volumes.shape)} and {len(targets)}")
        self.volumes, self.targets = volumes, targets.long()
        self.transform, self.classes = transform, list(classes)
        self.num_classes, self.in_chans = len(self.classes), 1
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.transform(self.volumes[i]), int(self.targets[i])  # (1, S, S, S), class


def npz_path(cfg: DataConfig) -> Path:
    """The official file of data.medmnist3d.name at data.medmnist3d.size."""
    m = cfg.medmnist3d
    name = f"{m.name}mnist3d{'' if m.size == 28 else f'_{m.size}'}.npz"
    root = data_root(cfg)
    looked = [root / "medmnist3d" / name, root / name]
    for p in looked:
        if p.is_file():
            return p
    raise missing_data_error(f"MedMNIST 3-D file {name}", looked, download=False)


def read_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """-> volumes (N, D, H, W) uint8 and labels (N,) of `split`; BadDataError naming the
    file for missing keys or wrong shapes."""
    try:
        with np.load(path, allow_pickle=False) as f:
            vols, labels = f[f"{split}_images"], f[f"{split}_labels"]
    except (KeyError, ValueError, OSError) as e:
        raise BadDataError(f"cannot read {split}_images / {split}_labels from {path}: {e} "
                           f"(expected an official MedMNIST .npz)", path) from e
    labels = labels.reshape(-1)
    if vols.ndim != 4 or vols.dtype != np.uint8 or len(vols) != len(labels):
        raise BadDataError(f"{path}: {split}_images must be uint8 (N, D, H, W) with one label "
                           f"each, found {vols.dtype} {vols.shape} and {len(labels)} labels",
                           path)
    return vols, labels


@register_dataset("medmnist3d")
def build_medmnist3d(cfg: DataConfig, split: str, train: bool) -> VolumeTensorDataset:
    check_split(split, SPLITS, "medmnist3d")
    path = npz_path(cfg)
    vols, labels = read_npz(path, split)
    classes = CLASSES[cfg.medmnist3d.name]
    check_labels(labels, len(classes), path)
    train_vols = vols if split == "train" else read_npz(path, "train")[0]
    unit = train_vols.astype(np.float32) / 255  # the training split's stats, for every split
    mean, std = norm_stats(cfg, (float(unit.mean()),), (float(unit.std()),))
    return VolumeTensorDataset(torch.from_numpy(vols), torch.from_numpy(labels.astype(np.int64)),
                               VolumeTransform(cfg.img_size, mean, std, train), classes,
                               mean, std)

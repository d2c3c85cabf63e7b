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

from pathlib import Path

import numpy as np
import torch

from vitmae.config import DataConfig
from vitmae.data.checks import BadDataError, check_labels
from vitmae.data.registry import check_split, norm_stats, register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.tensor_dataset import ImageTensorDataset
from vitmae.data.volume_transforms import VolumeTransform

# class names from MedMNIST's INFO: label 0, label 1
CLASSES = {"adrenal": ["normal", "hyperplasia"], "vessel": ["vessel", "aneurysm"]}
SPLITS = ("train", "val", "test")


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
def build_medmnist3d(cfg: DataConfig, split: str, train: bool) -> ImageTensorDataset:
    check_split(split, SPLITS, "medmnist3d")
    path = npz_path(cfg)
    vols, labels = read_npz(path, split)
    classes = CLASSES[cfg.medmnist3d.name]
    check_labels(labels, len(classes), path)
    train_vols = vols if split == "train" else read_npz(path, "train")[0]
    mean, std = norm_stats(cfg, *voxel_stats(train_vols))  # the training split's, every split
    ds = ImageTensorDataset(torch.from_numpy(vols)[:, None],  # (N, 1, D, H, W)
                            torch.from_numpy(labels.astype(np.int64)),
                            VolumeTransform(cfg.img_size, mean, std, train,
                                            permute_axes=cfg.volume.permute_axes),
                            classes, mean, std)
    ds.spatial_dims = 3  # the model must be a 3-D one (model.spatial_dims=3)
    return ds


def voxel_stats(vols: np.ndarray) -> tuple[tuple[float], tuple[float]]:
    """uint8 volumes -> ((mean,), (std,)) of their voxels / 255, from the 256 values' counts
    (no float copy of the volumes)."""
    counts = np.bincount(vols.reshape(-1), minlength=256).astype(np.float64)  # (256,)
    values = np.arange(256) / 255
    n = counts.sum()
    mean = (counts * values).sum() / n
    return (float(mean),), (float(np.sqrt((counts * (values - mean) ** 2).sum() / n)),)

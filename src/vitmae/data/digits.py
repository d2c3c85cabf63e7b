"""scikit-learn's handwritten digits: 1,797 real 8x8 images (values 0..16), offline.

The UCI optical digits set as shipped by `sklearn.datasets.load_digits`; no official split,
so a stratified 75/25 split seeded by `data.seed` gives 'train' (1,347) and 'test' (450).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from vitmae.config import DataConfig
from vitmae.data.registry import check_split, norm_stats, register_dataset
from vitmae.data.tensor_dataset import ImageTensorDataset
from vitmae.data.transforms import digits_transform

# pixel mean/std of all 1,797 images scaled to [0, 1]
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3760,)
SPLITS = ("train", "test")


def split_indices(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Deterministic stratified 75/25 split of positions 0..N-1 into 'train' and 'test'."""
    train, test = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=labels,
                                   random_state=seed)
    return {"train": train, "test": test}


@register_dataset("digits")
def build_digits(cfg: DataConfig, split: str, train: bool) -> ImageTensorDataset:
    check_split(split, SPLITS, "digits")
    bunch = load_digits()
    idx = split_indices(bunch.target, cfg.seed)[split]
    images = torch.from_numpy(bunch.images[idx] / 16.0).float().unsqueeze(1)  # (N, 1, 8, 8)
    targets = torch.from_numpy(bunch.target[idx])  # (N,)
    mean, std = norm_stats(cfg, DIGITS_MEAN, DIGITS_STD)
    return ImageTensorDataset(images, targets,
                              digits_transform(cfg.img_size, mean, std, train),
                              classes=[str(k) for k in range(10)],
                              mean=mean, std=std)

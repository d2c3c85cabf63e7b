"""`data.labels_fraction`: the labelled part of a training split for label-efficiency
studies, a fixed, seeded, class-balanced subset.

Each class keeps round(fraction * n_c) of its n_c images (at least 1): the prefix of a
permutation of that class's items drawn from numpy's PCG64 seeded with (data.seed, class), so
the subset is the same in every process and on every platform, independent of torch's RNG.
The permutation does not depend on the fraction, so the subsets are nested: with one seed,
the 1% subset is part of the 10% subset, which is part of the 50% one.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset, Subset

from vitmae.data.skip import SkipBad
from vitmae.errors import ConfigError


def labelled_indices(targets: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """targets: (N,) class index per item -> the sorted indices of the labelled subset."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"data.labels_fraction: must be in (0, 1], got {fraction}")
    targets = np.asarray(targets)
    keep = []
    for c in np.unique(targets):
        items = np.flatnonzero(targets == c)  # (n_c,) in data set order
        rng = np.random.Generator(np.random.PCG64([seed, int(c)]))
        n = max(1, round(fraction * len(items)))  # Python's round: half to even
        keep.append(items[rng.permutation(len(items))[:n]])  # a prefix: nested fractions
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def class_targets(ds: Dataset, key: str = "data.labels_fraction") -> np.ndarray:
    """(N,) the class index of every item, read without loading an image; a ConfigError
    naming `key` for a data set that does not list them (multi-label, segmentation, ...)."""
    if isinstance(ds, SkipBad):  # its attributes read through to the whole data set below
        return class_targets(ds.dataset, key)
    if isinstance(ds, Subset):  # data.subset's first items
        return class_targets(ds.dataset, key)[np.asarray(ds.indices)]
    if hasattr(ds, "targets") and np.ndim(ds.targets) == 1:  # in memory: digits, MNIST, CIFAR
        return np.asarray(ds.targets)
    if hasattr(ds, "samples"):  # image folders: (path, class index)
        return np.asarray([target for _, target in ds.samples], dtype=np.int64)
    raise ConfigError(f"{key}: needs a single-label classification data set "
                      f"that lists its labels; {type(ds).__name__} does not")

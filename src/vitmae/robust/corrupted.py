"""A test split whose images are corrupted at their stored size, before the run's transform.

vitmae's evaluation sets read an image, then apply their image transform (resize, normalise):
`transform` (digits, MNIST, CIFAR, image folders, VOC classification) or `items.image_transform`
(VOC and folder segmentation). `CorruptedSet` puts `vitmae.robust.corruptions.corrupt` in front
of that transform on a copy of the set, seeded by the item's index, so every run and every
batch size sees the same corrupted images; targets (labels, masks) are untouched.
"""

from __future__ import annotations

import copy

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from vitmae.errors import UsageError
from vitmae.robust.corruptions import check_corruption, corrupt

TRANSFORMS = ("transform", "image_transform")  # the attribute that holds the image transform


def copy_chain(dataset):
    """Shallow copies of `dataset` and of every set it wraps (`.dataset` of SkipBad, Subset,
    ...) and of its `.items` reader, so that the innermost transform can be replaced without
    touching the caller's."""
    dataset = copy.copy(dataset)
    own = getattr(dataset, "__dict__", {})
    if own.get("dataset") is not None:
        dataset.dataset = copy_chain(own["dataset"])
    if own.get("items") is not None:
        dataset.items = copy.copy(own["items"])
    return dataset


def transform_owner(dataset) -> tuple[object, str]:
    """(the object, its attribute) that holds the image transform of `dataset` or of a set
    it wraps (its own attributes only: wrappers pass attribute reads through)."""
    while True:
        own = getattr(dataset, "__dict__", {})
        for obj in (dataset, own.get("items")):
            for attr in TRANSFORMS:
                if obj is not None and callable(getattr(obj, "__dict__", {}).get(attr)):
                    return obj, attr
        if own.get("dataset") is None:
            raise UsageError(f"{type(dataset).__name__}: no image transform (.transform or "
                             f".items.image_transform) to put the corruption before")
        dataset = dataset.dataset


class CorruptedSet(Dataset):
    """`dataset` with corruption `name` at `severity` applied to every image before its own
    transform; the item at index i draws from (seed, name, i)."""

    def __init__(self, dataset, name: str, severity: int, seed: int = 0):
        check_corruption(name, severity)
        self.name, self.severity, self.seed, self.index = name, severity, seed, 0
        self.dataset = copy_chain(dataset)  # the caller's set keeps its own transform
        owner, attr = transform_owner(self.dataset)
        self.transform = getattr(owner, attr)
        setattr(owner, attr, self._corrupt_then_transform)

    def _corrupt_then_transform(self, img) -> torch.Tensor:
        x = img if isinstance(img, torch.Tensor) else TF.pil_to_tensor(img)  # (C, h, w)
        if x.ndim != 3:
            raise UsageError(f"the corruptions are of 2-D images (C, h, w); this data set's "
                             f"items have shape {tuple(x.shape)}")
        x = corrupt(x[None].cpu(), self.name, self.severity, self.seed, indices=[self.index])
        return self.transform(x[0])  # (C, h, w) float in [0, 1] -> the run's input

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        self.index = i  # read by _corrupt_then_transform, in this process
        return self.dataset[i]

    def __getattr__(self, name: str):  # mean, std, classes, num_classes, in_chans, ...
        if name == "dataset":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

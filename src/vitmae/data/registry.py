"""The data set registry: name -> builder, and `build_dataset`, the one entry point.

A family of data sets registers its builders in its own file (as timm registers model
variants), and `vitmae/data/__init__.py` imports that file:

    @register_dataset("mnist")
    def build_mnist(cfg: DataConfig, split: str, train: bool) -> Dataset: ...

Every dataset has `num_classes`, `in_chans`, `classes`, `mean` and `std` attributes. One
whose items read files also has `files(i) -> [Path]` (the image first), and reports a bad
item by raising a `BadDataError` naming the file (`vitmae.data.checks`); `build_dataset`
wraps every data set in `SkipBad`, which skips such items under `data.skip_bad`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import Dataset, Subset

from vitmae.config import DataConfig
from vitmae.data.labelled import class_targets, labelled_indices
from vitmae.data.skip import SkipBad
from vitmae.errors import ConfigError

Builder = Callable[[DataConfig, str, bool], Dataset]
DATASETS: dict[str, Builder] = {}


def register_dataset(name: str) -> Callable[[Builder], Builder]:
    """Decorator: add `builder(cfg, split, train) -> Dataset` to DATASETS under `name`."""

    def add(builder: Builder) -> Builder:
        if name in DATASETS:
            raise ValueError(f"data set '{name}' is already registered")
        DATASETS[name] = builder
        return builder

    return add


class Items(Subset):
    """Some items of a dataset, with the dataset's attributes (classes, mean, ...)."""

    def __getattr__(self, name: str):
        # guard: during unpickling (DataLoader workers) `dataset` is not yet set
        if name.startswith("__") or name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class FirstItems(Items):
    """The first `n` items of a dataset."""

    def __init__(self, dataset: Dataset, n: int):
        super().__init__(dataset, range(min(n, len(dataset))))


def build_dataset(cfg: DataConfig, split: str, train: bool, labelled: bool = False) -> SkipBad:
    """The dataset `cfg.dataset`, split `split`; `train` turns on training augmentation.

    Items are `(img, target)`: img (C, img_size, img_size) float32, normalized with the
    dataset's mean/std. With `cfg.subset` and train=True, only the first `subset` items; then
    with `labelled` (fine-tuning), the class-balanced `cfg.labels_fraction` of those
    (`vitmae.data.labelled`). A bad item raises naming its file, or with `cfg.skip_bad` is
    replaced by the next good one.
    """
    ds = builder_of(cfg)(cfg, split, train)  # called here: warnings point at our caller
    if train and cfg.subset is not None:
        ds = FirstItems(ds, cfg.subset)
    if train and labelled and cfg.labels_fraction < 1.0:
        ds = Items(ds, labelled_indices(class_targets(ds), cfg.labels_fraction,
                                        cfg.seed).tolist())
    return SkipBad(ds, cfg.skip_bad)


def build_plain(cfg: DataConfig, split: str, train: bool) -> Dataset:
    """The registered builder's data set as it is: every item, a bad one raises."""
    return builder_of(cfg)(cfg, split, train)


def builder_of(cfg: DataConfig) -> Builder:
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"data.dataset: unknown data set '{cfg.dataset}' "
                          f"(registered: {', '.join(sorted(DATASETS))})")
    return DATASETS[cfg.dataset]


def check_split(split: str, valid: tuple[str, ...], name: str) -> None:
    """Raise a ValueError naming the valid splits of data set `name`."""
    if split not in valid:
        raise ConfigError(f"{name}: unknown split '{split}' (valid: {', '.join(valid)})")


def norm_stats(cfg: DataConfig, mean: tuple, std: tuple) -> tuple[tuple, tuple]:
    """The data set's own per-channel (mean, std), or data.mean / data.std where set (e.g.
    taken from pretrained weights), fitted to the channel count: averaged for grey data given
    RGB values, repeated for RGB data given one value."""
    if cfg.mean is None:
        return tuple(mean), tuple(std)
    C = len(mean)

    def fit(values: list[float], key: str) -> tuple:
        if len(values) == C:
            return tuple(values)
        if C == 1:
            return (sum(values) / len(values),)
        if len(values) == 1:
            return tuple(values) * C
        raise ConfigError(f"{key}: {len(values)} values for {C}-channel images")

    return fit(cfg.mean, "data.mean"), fit(cfg.std, "data.std")

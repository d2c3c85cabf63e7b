"""Data sets for vitmae: `build_dataset(cfg, split, train)` dispatches on `data.dataset`.

Every dataset yields `(img, target)`, img (C, img_size, img_size) float32 normalized with
its `mean`/`std`, and has `num_classes`, `in_chans`, `classes`, `mean`, `std`. A new
family registers its builders with `@register_dataset(name)` in its own file, imported here.
"""

from vitmae.data import (  # noqa: F401  (register)
    cifar,
    digits,
    folder,
    medmnist3d,
    mnist,
    mnist_seg,
    seg_folder,
    voc,
    volume_folder,
    volume_seg_folder,
)
from vitmae.data.registry import DATASETS, build_dataset, register_dataset
from vitmae.data.root import data_root

__all__ = ["DATASETS", "build_dataset", "data_root", "register_dataset"]

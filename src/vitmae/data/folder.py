"""A user's image folder in torchvision's ImageFolder layout: `<root>/<split>/<class>/*.jpg`.

Classes are the sorted sub-folder names (as ImageFolder). Images are decoded with Pillow,
converted to RGB (`data.checks.open_image`: any mode, 16-bit scaled) and normalized with
the ImageNet mean/std (what pretrained ViTs expect); one that cannot be decoded raises a
BadImageError naming it (skipped under `data.skip_bad`, `data.skip`).

The class folders of the training and the evaluation split are compared at start: a class
folder without images, or one that only one split has, stops the build naming the folders
(the class indices of the two splits would otherwise disagree, or a class would have no
images), unless `data.allow_class_mismatch`; the classes are then the union of both
splits' class folders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from vitmae.config import DataConfig
from vitmae.data.checks import BadDataError, open_image
from vitmae.data.registry import norm_stats, register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD, folder_transform

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def is_image(p: Path) -> bool:
    return p.suffix.lower() in IMG_EXTENSIONS and p.is_file()


def class_names(folder: Path) -> list[str]:
    """The sorted sub-folder names of `folder`; [] if it does not exist."""
    return sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []


def class_problems(folders: list[Path], is_item: Callable[[Path], bool] = is_image,
                   kind: str = "images") -> list[str]:
    """What is wrong with the class folders of these splits (one folder per split): a class
    folder with no item (`is_item`: an image, a volume), a class folder that some splits
    lack. [] when all agree."""
    names = {f: class_names(f) for f in folders if f.is_dir()}
    union = sorted(set().union(*names.values())) if names else []
    problems = []
    for folder, have in names.items():
        lacking = [c for c in union if c not in have]
        if lacking:
            problems.append(f"{folder} has no class folder {', '.join(lacking)} (the other "
                            f"split has)")
        empty = [folder / c for c in have if not any(map(is_item, (folder / c).rglob("*")))]
        problems += [f"{e} has no {kind}" for e in empty]
    return problems


def splits_of(cfg: DataConfig, split: str) -> list[Path]:
    """The folders of `split` and of the run's other split (train_split / val_split)."""
    root = data_root(cfg)
    return [root / s for s in dict.fromkeys((split, cfg.train_split, cfg.val_split))]


class ClassFolderDataset(Dataset):
    """Items of `<folder>/<class>/**` in sorted order: (transform(read(path)), class index).
    `is_item` picks the files (images, volumes), `read` opens one (raising a BadDataError that
    names it)."""

    def __init__(self, folder: Path, transform: Callable, classes: list[str],
                 is_item: Callable[[Path], bool] = is_image, read: Callable = open_image,
                 kind: str = "images", extensions: tuple[str, ...] = IMG_EXTENSIONS):
        self.folder, self.transform, self.read = Path(folder), transform, read
        self.classes = list(classes)
        self.samples = [(p, k) for k, c in enumerate(self.classes)
                        for p in sorted((self.folder / c).rglob("*")) if is_item(p)]
        if not self.samples:
            raise FileNotFoundError(f"{self.folder}: no {kind} in class sub-folders (expected "
                                    f"{self.folder}/<class>/*{'|*'.join(extensions)})")
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def files(self, i: int) -> list[Path]:
        return [self.samples[i][0]]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, target = self.samples[i]
        return self.transform(self.read(path)), target


def split_classes(cfg: DataConfig, split: str, layout: str, kind: str
                  ) -> tuple[Path, list[str]]:
    """(the split's folder, the classes: the sorted class folders of both splits); a missing
    folder is an error that shows `layout`."""
    folder = data_root(cfg) / split
    if not folder.is_dir():
        raise missing_data_error(f"{kind} folder split '{split}' (layout {layout})", [folder],
                                 download=False)
    return folder, sorted(set().union(*map(class_names, splits_of(cfg, split))))


def check_class_folders(cfg: DataConfig, split: str, is_item: Callable[[Path], bool],
                        kind: str) -> None:
    """The class folders of the two splits agree and none is empty, unless
    data.allow_class_mismatch."""
    problems = class_problems(splits_of(cfg, split), is_item, kind)
    if problems and not cfg.allow_class_mismatch:
        raise BadDataError(f"{kind.removesuffix('s')} folder classes: {'; '.join(problems)}. "
                           f"Fix the folders, or pass data.allow_class_mismatch=true to train "
                           f"on the union of the class folders of both splits")


@register_dataset("folder")
def build_folder(cfg: DataConfig, split: str, train: bool) -> ClassFolderDataset:
    folder, classes = split_classes(cfg, split, f"<root>/{split}/<class>/*.jpg", "images")
    mean, std = norm_stats(cfg, IMAGENET_MEAN, IMAGENET_STD)
    ds = ClassFolderDataset(folder, folder_transform(cfg.img_size, mean, std, train), classes)
    check_class_folders(cfg, split, is_image, "images")
    ds.in_chans, ds.mean, ds.std = 3, mean, std
    return ds

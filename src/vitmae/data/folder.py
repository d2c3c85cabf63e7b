"""A user's image folder in torchvision's ImageFolder layout: `<root>/<split>/<class>/*.jpg`.

Classes are the sorted sub-folder names (as ImageFolder). Images are decoded with Pillow,
converted to RGB (`data.checks.open_image`: any mode, 16-bit scaled) and normalized with
the ImageNet mean/std (what pretrained ViTs expect); one that cannot be decoded raises a
BadImageError naming it (skipped under `data.skip_bad`, `data.skip`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from vitmae.config import DataConfig
from vitmae.data.checks import open_image
from vitmae.data.registry import norm_stats, register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD, folder_transform

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def scan_folder(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """-> sorted class names, [(image path, class index)] in sorted order."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    samples = [(p, k) for k, c in enumerate(classes) for p in sorted((folder / c).rglob("*"))
               if p.suffix.lower() in IMG_EXTENSIONS and p.is_file()]
    return classes, samples


class ImageFolderDataset(Dataset):
    """Items: (img (3, img_size, img_size) float32, class index)."""

    def __init__(self, folder: Path, transform: Callable):
        self.folder = Path(folder)
        self.classes, self.samples = scan_folder(self.folder)
        if not self.samples:
            raise FileNotFoundError(f"{self.folder}: no images in class sub-folders (expected "
                                    f"{self.folder}/<class>/*{'|'.join(IMG_EXTENSIONS)})")
        self.transform = transform
        self.num_classes = len(self.classes)
        self.in_chans = 3
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    def __len__(self) -> int:
        return len(self.samples)

    def files(self, i: int) -> list[Path]:
        return [self.samples[i][0]]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, target = self.samples[i]
        return self.transform(open_image(path)), target


@register_dataset("folder")
def build_folder(cfg: DataConfig, split: str, train: bool) -> ImageFolderDataset:
    folder = data_root(cfg) / split
    if not folder.is_dir():
        raise missing_data_error(f"image folder split '{split}' (layout <root>/{split}/<class>/"
                                 f"*.jpg)", [folder], download=False)
    mean, std = norm_stats(cfg, IMAGENET_MEAN, IMAGENET_STD)
    ds = ImageFolderDataset(folder, folder_transform(cfg.img_size, mean, std, train))
    ds.mean, ds.std = mean, std
    return ds

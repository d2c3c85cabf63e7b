"""A user's image folder in torchvision's ImageFolder layout: `<root>/<split>/<class>/*.jpg`.

Classes are the sorted sub-folder names (as ImageFolder). Images are decoded with Pillow,
converted to RGB and normalized with the ImageNet mean/std (what pretrained ViTs expect).
With `data.skip_bad`, an unreadable image is skipped (the next one is returned) and its
path recorded in `bad_files` (per process: DataLoader workers keep their own list).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from vitmae.config import DataConfig
from vitmae.data.registry import register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD, folder_transform

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# what Pillow raises on a broken file: UnidentifiedImageError (an OSError), truncated data
# (OSError), bad PNG chunks (SyntaxError), bad header values (ValueError)
DECODE_ERRORS = (OSError, SyntaxError, ValueError)


def scan_folder(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """-> sorted class names, [(image path, class index)] in sorted order."""
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    samples = [(p, k) for k, c in enumerate(classes) for p in sorted((folder / c).rglob("*"))
               if p.suffix.lower() in IMG_EXTENSIONS and p.is_file()]
    return classes, samples


class ImageFolderDataset(Dataset):
    """Items: (img (3, img_size, img_size) float32, class index)."""

    def __init__(self, folder: Path, transform: Callable, skip_bad: bool = False):
        self.folder = Path(folder)
        self.classes, self.samples = scan_folder(self.folder)
        if not self.samples:
            raise FileNotFoundError(f"{self.folder}: no images in class sub-folders (expected "
                                    f"{self.folder}/<class>/*{'|'.join(IMG_EXTENSIONS)})")
        self.transform = transform
        self.skip_bad = skip_bad
        self.bad_files: list[str] = []
        self.num_classes = len(self.classes)
        self.in_chans = 3
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        for j in range(len(self.samples)):
            path, target = self.samples[(i + j) % len(self.samples)]
            try:
                with Image.open(path) as im:
                    img = im.convert("RGB")
            except DECODE_ERRORS as e:
                if not self.skip_bad:
                    raise OSError(f"cannot read image {path}: {e} (pass data.skip_bad=true to "
                                  f"skip unreadable images)") from e
                if str(path) not in self.bad_files:
                    self.bad_files.append(str(path))
                continue
            return self.transform(img), target
        raise OSError(f"{self.folder}: no readable image ({len(self.bad_files)} unreadable)")


@register_dataset("folder")
def build_folder(cfg: DataConfig, split: str, train: bool) -> ImageFolderDataset:
    folder = data_root(cfg) / split
    if not folder.is_dir():
        raise missing_data_error(f"image folder split '{split}' (layout <root>/{split}/<class>/"
                                 f"*.jpg)", [folder], download=False)
    return ImageFolderDataset(folder, folder_transform(cfg.img_size, IMAGENET_MEAN,
                                                       IMAGENET_STD, train), cfg.skip_bad)

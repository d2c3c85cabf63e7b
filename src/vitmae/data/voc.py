"""PASCAL VOC 2012 (Everingham et al.): semantic segmentation and multi-label classification.

Standard layout under the data root: `VOCdevkit/VOC2012/` with `JPEGImages/<id>.jpg`,
`SegmentationClass/<id>.png` (palette PNGs: 0 background, 1-20 the classes, 255 void),
`Annotations/<id>.xml` and `ImageSets/Segmentation/<list>.txt`. The split is the name of any
list there (`train`, `val`, or e.g. `train_available`). Photos are decoded per item.
  `voc_seg` (task segment, 21 classes): training items (img (3, S, S), mask (S, S) int64)
      with joint random scale / crop / flip; evaluation items (img (3, S, S), mask padded
      with 255 to the largest mask of the list (Hm, Wm), size (2,) = original (H0, W0)),
      so that the metrics are computed at the original size (`vitmae.tasks.segment`).
  `voc_cls` (task multilabel, 20 classes): (img (3, S, S), target (20,) float 0/1); the
      target lists every object class of `Annotations/<id>.xml` (difficult objects
      included) where that file exists, else the classes 1-20 present in the mask.
MAE pretraining reads `voc_seg` too (the pretraining task uses the image only).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from vitmae.config import DataConfig
from vitmae.data.checks import open_image
from vitmae.data.joint_transforms import (
    eval_image_transform,
    pad_mask,
    train_joint_transform,
)
from vitmae.data.registry import norm_stats, register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD

CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
           "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
           "sheep", "sofa", "train", "tvmonitor"]
VOC_DIR = Path("VOCdevkit") / "VOC2012"


def read_ids(voc: Path, split: str) -> list[str]:
    """The ids of `ImageSets/Segmentation/<split>.txt`; FileNotFoundError listing the lists."""
    lists = voc / "ImageSets" / "Segmentation"
    path = lists / f"{split}.txt"
    if not path.is_file():
        names = sorted(p.stem for p in lists.glob("*.txt")) if lists.is_dir() else []
        raise missing_data_error(f"VOC split list '{split}' (lists there: "
                                 f"{', '.join(names) or 'none'})", [path], download=False)
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def check_files(ids: list[str], folder: Path, suffix: str, split: str) -> None:
    """FileNotFoundError saying how many of the listed ids have no file in `folder`, and which
    (the first few), before any compute starts."""
    missing = [i for i in ids if not (folder / f"{i}{suffix}").is_file()]
    if missing:
        raise FileNotFoundError(
            f"VOC split '{split}': {len(missing)} of {len(ids)} listed images have no "
            f"{folder}/<id>{suffix} (first: {', '.join(missing[:5])}). Use a list that names "
            f"only available images (e.g. train_available / val_available), or add the files.")


def read_image(path: Path) -> tv_tensors.Image:
    """A photo -> (3, H0, W0) uint8; grey, CMYK or palette photos are converted, and one that
    cannot be decoded (truncated, not an image) raises BadImageError naming the file."""
    return v2.functional.to_image(open_image(path, "RGB"))


def read_mask(path: Path) -> Tensor:
    """A palette PNG -> (H0, W0) uint8 class indices (the palette index is the class)."""
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette (P) or grey (L) PNG, found {im.mode}")
        return torch.from_numpy(np.asarray(im).copy())


def png_size(path: Path) -> tuple[int, int]:
    """(W, H) from the file header, without decoding the pixels."""
    with Image.open(path) as im:
        return im.size


def xml_classes(path: Path) -> set[int]:
    """Class indices (1-20) of the objects in a VOC annotation file."""
    names = [o.findtext("name", "").strip() for o in ET.parse(path).getroot().iter("object")]
    unknown = [n for n in names if n not in CLASSES[1:]]
    if unknown:
        raise ValueError(f"{path}: unknown VOC class names {unknown}")
    return {CLASSES.index(n) for n in names}


class VOCBase(Dataset):
    """The ids of one split list, with their photo (and mask) paths checked at start."""

    in_chans = 3
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, root: Path, split: str, img_size: int, train: bool, need_masks: bool,
                 stats: tuple[tuple, tuple] | None = None):
        if stats is not None:
            self.mean, self.std = stats
        self.voc, self.split, self.img_size, self.train = root / VOC_DIR, split, img_size, train
        self.ids = read_ids(self.voc, split)
        check_files(self.ids, self.voc / "JPEGImages", ".jpg", split)
        if need_masks:
            check_files(self.ids, self.voc / "SegmentationClass", ".png", split)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, id_: str) -> Path:
        return self.voc / "JPEGImages" / f"{id_}.jpg"

    def mask_path(self, id_: str) -> Path:
        return self.voc / "SegmentationClass" / f"{id_}.png"


class VOCSegmentation(VOCBase):
    classes = CLASSES
    num_classes = len(CLASSES)

    def __init__(self, root: Path, split: str, img_size: int, train: bool,
                 stats: tuple[tuple, tuple] | None = None):
        super().__init__(root, split, img_size, train, need_masks=True, stats=stats)
        if train:
            self.joint = train_joint_transform(img_size, self.mean, self.std)
        else:
            self.image_transform = eval_image_transform(img_size, self.mean, self.std)
            sizes = [png_size(self.mask_path(i)) for i in self.ids]  # (W0, H0) each
            self.pad_to = (max(s[1] for s in sizes), max(s[0] for s in sizes))  # (Hm, Wm)

    def __getitem__(self, i: int):
        id_ = self.ids[i]
        img, mask = read_image(self.image_path(id_)), read_mask(self.mask_path(id_))
        if img.shape[-2:] != mask.shape:
            raise ValueError(f"VOC {id_}: photo {tuple(img.shape[-2:])} and mask "
                             f"{tuple(mask.shape)} differ in size")
        if self.train:
            return self.joint(img, mask)  # (3, S, S), (S, S)
        size = torch.tensor(mask.shape)  # (2,) original (H0, W0)
        return (self.image_transform(img).as_subclass(Tensor),
                pad_mask(mask.long(), self.pad_to), size)


class VOCClassification(VOCBase):
    classes = CLASSES[1:]
    num_classes = len(CLASSES) - 1

    def __init__(self, root: Path, split: str, img_size: int, train: bool,
                 stats: tuple[tuple, tuple] | None = None):
        super().__init__(root, split, img_size, train, need_masks=False, stats=stats)
        no_xml = [i for i in self.ids if not self.xml_path(i).is_file()]
        check_files(no_xml, self.voc / "SegmentationClass", ".png", split)  # labels from masks
        if train:
            self.transform = v2.Compose([
                v2.RandomResizedCrop(img_size, scale=(0.5, 1.0), antialias=True),
                v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(self.mean, self.std)])
        else:
            self.transform = eval_image_transform(img_size, self.mean, self.std)

    def xml_path(self, id_: str) -> Path:
        return self.voc / "Annotations" / f"{id_}.xml"

    def labels(self, id_: str) -> set[int]:
        """Class indices 1-20 of image `id_`: from its XML if present, else from its mask."""
        if self.xml_path(id_).is_file():
            return xml_classes(self.xml_path(id_))
        present = torch.unique(read_mask(self.mask_path(id_))).tolist()
        return {c for c in present if 1 <= c <= 20}

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        id_ = self.ids[i]
        target = torch.zeros(self.num_classes)
        target[[c - 1 for c in self.labels(id_)]] = 1.0
        return self.transform(read_image(self.image_path(id_))).as_subclass(Tensor), target


@register_dataset("voc_seg")
def build_voc_seg(cfg: DataConfig, split: str, train: bool) -> VOCSegmentation:
    return VOCSegmentation(data_root(cfg), split, cfg.img_size, train,
                           norm_stats(cfg, IMAGENET_MEAN, IMAGENET_STD))


@register_dataset("voc_cls")
def build_voc_cls(cfg: DataConfig, split: str, train: bool) -> VOCClassification:
    return VOCClassification(data_root(cfg), split, cfg.img_size, train,
                             norm_stats(cfg, IMAGENET_MEAN, IMAGENET_STD))

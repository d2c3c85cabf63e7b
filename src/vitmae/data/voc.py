"""PASCAL VOC 2012 (Everingham et al.): semantic segmentation and multi-label classification.

Standard layout under the data root: `VOCdevkit/VOC2012/` with `JPEGImages/<id>.jpg`,
`SegmentationClass/<id>.png` (palette PNGs: 0 background, 1-20 the classes, 255 void),
`Annotations/<id>.xml` and `ImageSets/Segmentation/<list>.txt`. The split is the name of any
list there (`train`, `val`, or e.g. `train_available`). Listed ids without a photo (or
mask) stop the build, unless `data.skip_bad` (then each is a missing file, skipped when
read). Photos and masks are read per item (`data.seg_items`: masks checked).
  `voc_seg` (task segment, 21 classes): the items of `data.seg_items`.
  `voc_cls` (task multilabel, 20 classes): (img (3, S, S), target (20,) float 0/1); the
      target lists every object class of `Annotations/<id>.xml` (difficult objects
      included) where that file exists, else the classes 1-20 present in the mask.
MAE pretraining reads `voc_seg` too (the pretraining task uses the image only).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from vitmae.config import DataConfig
from vitmae.data.checks import BadLabelError
from vitmae.data.joint_transforms import eval_image_transform
from vitmae.data.registry import norm_stats, register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.seg_items import SegmentationItems, read_image, read_mask
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
            f"only available images (e.g. train_available / val_available), add the files, "
            f"or pass data.skip_bad=true to skip them; `vitmae check-data` lists them all.")


def xml_classes(path: Path) -> set[int]:
    """Class indices (1-20) of the objects in a VOC annotation file; BadLabelError naming
    it if it cannot be parsed or names an unknown class."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise BadLabelError(f"{path}: not a readable VOC annotation ({e})", path) from e
    names = [o.findtext("name", "").strip() for o in root.iter("object")]
    unknown = [n for n in names if n not in CLASSES[1:]]
    if unknown:
        raise BadLabelError(f"{path}: unknown VOC class names {unknown} (expected one of "
                            f"{', '.join(CLASSES[1:])})", path)
    return {CLASSES.index(n) for n in names}


class VOCBase(Dataset):
    """The ids of one split list, with their photo (and mask) paths checked at start."""

    in_chans = 3
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, root: Path, split: str, img_size: int, train: bool, need_masks: bool,
                 stats: tuple[tuple, tuple] | None = None, skip_bad: bool = False):
        if stats is not None:
            self.mean, self.std = stats
        self.voc, self.split, self.img_size, self.train = root / VOC_DIR, split, img_size, train
        self.ids = read_ids(self.voc, split)
        if not skip_bad:
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
                 stats: tuple[tuple, tuple] | None = None, skip_bad: bool = False):
        super().__init__(root, split, img_size, train, True, stats, skip_bad)
        self.items = SegmentationItems(self.num_classes, img_size, self.mean, self.std, train,
                                       [self.mask_path(i) for i in self.ids])
        self.pad_to = getattr(self.items, "pad_to", None)  # evaluation: (Hm, Wm)

    def files(self, i: int) -> list[Path]:
        return [self.image_path(self.ids[i]), self.mask_path(self.ids[i])]

    def __getitem__(self, i: int):
        return self.items(*self.files(i))


class VOCClassification(VOCBase):
    classes = CLASSES[1:]
    num_classes = len(CLASSES) - 1

    def __init__(self, root: Path, split: str, img_size: int, train: bool,
                 stats: tuple[tuple, tuple] | None = None, skip_bad: bool = False):
        super().__init__(root, split, img_size, train, False, stats, skip_bad)
        if not skip_bad:
            no_xml = [i for i in self.ids if not self.xml_path(i).is_file()]
            check_files(no_xml, self.voc / "SegmentationClass", ".png", split)  # from masks
        if train:
            self.transform = v2.Compose([
                v2.RandomResizedCrop(img_size, scale=(0.5, 1.0), antialias=True),
                v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(self.mean, self.std)])
        else:
            self.transform = eval_image_transform(img_size, self.mean, self.std)

    def xml_path(self, id_: str) -> Path:
        return self.voc / "Annotations" / f"{id_}.xml"

    def files(self, i: int) -> list[Path]:
        """The photo, and the file its labels come from: the XML if present, else the mask."""
        id_ = self.ids[i]
        xml = self.xml_path(id_)
        return [self.image_path(id_), xml if xml.is_file() else self.mask_path(id_)]

    def labels(self, id_: str) -> set[int]:
        """Class indices 1-20 of image `id_`: from its XML if present, else from its mask
        (checked: values 0-20 or 255)."""
        if self.xml_path(id_).is_file():
            return xml_classes(self.xml_path(id_))
        present = torch.unique(read_mask(self.mask_path(id_), len(CLASSES))).tolist()
        return {c for c in present if 1 <= c <= 20}

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        id_ = self.ids[i]
        target = torch.zeros(self.num_classes)
        target[[c - 1 for c in self.labels(id_)]] = 1.0
        return self.transform(read_image(self.image_path(id_))).as_subclass(Tensor), target


@register_dataset("voc_seg")
def build_voc_seg(cfg: DataConfig, split: str, train: bool) -> VOCSegmentation:
    return VOCSegmentation(data_root(cfg), split, cfg.img_size, train,
                           norm_stats(cfg, IMAGENET_MEAN, IMAGENET_STD), cfg.skip_bad)


@register_dataset("voc_cls")
def build_voc_cls(cfg: DataConfig, split: str, train: bool) -> VOCClassification:
    return VOCClassification(data_root(cfg), split, cfg.img_size, train,
                             norm_stats(cfg, IMAGENET_MEAN, IMAGENET_STD), cfg.skip_bad)

"""Your own segmentation data: `seg_folder`, photos and masks paired by file name.

Layout under the data root:
    <split>/images/<name>.jpg|png|...   the photos (any mode, converted to RGB)
    <split>/masks/<name>.png            its mask: an index PNG (grey, value = class) or a
                                        palette PNG (the palette index is the class); 255 void
    classes.txt                         optional: one class name per line, line k = class k
Without classes.txt the classes are 0..m, m the largest value (other than 255) in the
training split's masks, which are all read at start to find it. Items and checks are VOC's
(`data.seg_items`): a mask value outside the classes, a mask whose size differs from its
photo, or a file that cannot be read raises an error naming the file (skipped under
`data.skip_bad`); a photo without a mask stops the build, unless `data.skip_bad`.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from vitmae.config import DataConfig
from vitmae.data.checks import BadDataError, read_mask_array
from vitmae.data.folder import IMG_EXTENSIONS
from vitmae.data.palette import VOID
from vitmae.data.registry import norm_stats, register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.seg_items import SegmentationItems
from vitmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def photo_files(images_dir: Path) -> list[Path]:
    return [p for p in images_dir.iterdir() if p.suffix.lower() in IMG_EXTENSIONS and p.is_file()]


def png_mask(masks_dir: Path, stem: str) -> Path:
    return masks_dir / f"{stem}.png"


def pair_files(split_dir: Path, skip_bad: bool, list_items=photo_files, stem_of=lambda p: p.stem,
               mask_of=png_mask, layout: str = "images/*.jpg and .../masks/*.png",
               kind: str = "photos") -> tuple[list[Path], list[Path]]:
    """-> the split's items (`images/`, as `list_items` finds them) and their masks (`masks/`,
    as `mask_of(masks_dir, stem)` names them), sorted by name. The defaults are photos with
    `masks/<stem>.png` (seg_folder); volume_seg_folder passes its own."""
    images_dir, masks_dir = split_dir / "images", split_dir / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise missing_data_error(f"split '{split_dir.name}' (layout <root>/{split_dir.name}/"
                                 f"{layout})", [images_dir, masks_dir], download=False)
    images = sorted(list_items(images_dir))
    if not images:
        raise FileNotFoundError(f"{images_dir}: no {kind} (expected {layout.split(' ')[0]})")
    stems: dict[str, Path] = {}
    for p in images:
        if stem_of(p) in stems:
            raise BadDataError(f"{stems[stem_of(p)]} and {p}: two {kind} for one mask name")
        stems[stem_of(p)] = p
    masks = [mask_of(masks_dir, stem_of(p)) for p in images]
    missing = [m for m in masks if not m.is_file()]
    if missing and not skip_bad:
        raise FileNotFoundError(
            f"{len(missing)} of {len(images)} {kind} in {images_dir} have no mask in "
            f"{masks_dir} (first: {', '.join(m.name for m in missing[:5])}); pass "
            f"data.skip_bad=true to skip them, or run `vitmae check-data` to list them all")
    return images, masks


def read_classes(root: Path, train_masks: list[Path], read_mask=read_mask_array) -> list[str]:
    """The lines of `<root>/classes.txt`, else '0'..'m' for the largest label m of the
    training masks (each read by `read_mask`)."""
    names_file = root / "classes.txt"
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
        if not 1 <= len(names) <= VOID:
            raise BadDataError(f"{names_file}: expected 1 to {VOID} class names (one a line; "
                               f"{VOID} is void), found {len(names)}")
        return names
    largest = 0
    for path in train_masks:
        try:
            values = read_mask(path)
        except BadDataError:  # reported, naming the file, when the item is read
            continue
        largest = max(largest, int(values[values != VOID].max(initial=0)))
    if largest >= VOID:
        raise BadDataError(f"{root}: a training mask has the value {largest}; classes must be "
                           f"0..{VOID - 1} ({VOID} is void)")
    return [str(k) for k in range(largest + 1)]


class SegFolder(Dataset):
    """Items: `items(photo, mask)` of each file pair (`SegmentationItems`, or
    `VolumeSegItems` for scans); `ids` are the file names without suffix."""

    in_chans = 3

    def __init__(self, images: list[Path], masks: list[Path], classes: list[str],
                 stats: tuple[tuple, tuple], items, ids: list[str]):
        self.image_paths, self.mask_paths, self.ids = images, masks, ids
        self.classes, self.num_classes = classes, len(classes)
        self.mean, self.std = stats
        self.items = items
        self.pad_to = getattr(items, "pad_to", None)  # evaluation: (Hm, Wm)

    def __len__(self) -> int:
        return len(self.image_paths)

    def files(self, i: int) -> list[Path]:
        return [self.image_paths[i], self.mask_paths[i]]

    def __getitem__(self, i: int):
        return self.items(*self.files(i))


def paired_split(cfg: DataConfig, split: str, pair=pair_files, read_mask=read_mask_array
                 ) -> tuple[list[Path], list[Path], list[str]]:
    """-> the split's files and masks (as `pair` finds them) and the class names (classes.txt,
    else read from the training split's masks)."""
    root = data_root(cfg)
    images, masks = pair(root / split, cfg.skip_bad)
    if split == cfg.train_split or (root / "classes.txt").is_file():
        train_masks = masks
    else:
        train_masks = pair(root / cfg.train_split, skip_bad=True)[1]
    return images, masks, read_classes(root, train_masks, read_mask)


@register_dataset("seg_folder")
def build_seg_folder(cfg: DataConfig, split: str, train: bool) -> SegFolder:
    images, masks, classes = paired_split(cfg, split)
    mean, std = norm_stats(cfg, IMAGENET_MEAN, IMAGENET_STD)
    items = SegmentationItems(len(classes), cfg.img_size, mean, std, train, masks)
    return SegFolder(images, masks, classes, (mean, std), items, [p.stem for p in images])

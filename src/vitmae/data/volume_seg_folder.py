"""Your own 3-D segmentation data: `volume_seg_folder`, scans and label volumes paired by name.

Layout under the data root (the 3-D counterpart of `seg_folder`):
    <split>/images/<name>.nii.gz|.nii|.npy   the scans
    <split>/masks/<name>.nii.gz|.nii|.npy    its label volume, same shape: voxel value = class,
                                             255 void (any of the three formats)
    classes.txt                              optional: one class name per line, line k = class k
Without classes.txt the classes are 0..m, m the largest value (other than 255) in the
training split's masks, all read at start to find it. A mask with another class, a fractional
value or another shape than its scan, or a file that cannot be read, raises an error naming
the file (skipped under `data.skip_bad`); a scan without a mask stops the build unless
`data.skip_bad`. Items: `vitmae.data.volume_seg_items` (random cubes for training, whole
volumes for evaluation), read as data.volume says (spacing, intensity range, crops).
"""

from __future__ import annotations

from pathlib import Path

from vitmae.config import DataConfig
from vitmae.data.registry import norm_stats, register_dataset
from vitmae.data.seg_folder import SegFolder, pair_files, paired_split
from vitmae.data.volume_folder import MEAN, STD
from vitmae.data.volume_io import VOLUME_EXTENSIONS, is_volume
from vitmae.data.volume_seg_items import VolumeSegItems, read_volume_mask

LAYOUT = "images/*.nii.gz|*.npy and .../masks/*.nii.gz|*.npy"


def volume_stem(p: Path) -> str:
    """The file name without its volume extension (`.nii.gz` whole)."""
    name = p.name
    ext = next((e for e in VOLUME_EXTENSIONS if name.lower().endswith(e)), "")
    return name[: len(name) - len(ext)]


def volume_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if is_volume(p)]


def volume_mask(masks_dir: Path, stem: str) -> Path:
    """`masks/<stem>` with whichever volume extension exists (.nii.gz when none does)."""
    for ext in (".nii.gz", ".nii", ".npy"):
        if (masks_dir / f"{stem}{ext}").is_file():
            return masks_dir / f"{stem}{ext}"
    return masks_dir / f"{stem}.nii.gz"


def pair_volumes(split_dir: Path, skip_bad: bool) -> tuple[list[Path], list[Path]]:
    return pair_files(split_dir, skip_bad, volume_files, volume_stem, volume_mask, LAYOUT,
                      "scans")


@register_dataset("volume_seg_folder")
def build_volume_seg_folder(cfg: DataConfig, split: str, train: bool) -> SegFolder:
    images, masks, classes = paired_split(cfg, split, pair_volumes, read_volume_mask)
    mean, std = norm_stats(cfg, MEAN, STD)
    items = VolumeSegItems(len(classes), cfg.img_size, mean, std, train, cfg.volume, images)
    ds = SegFolder(images, masks, classes, (mean, std), items, [volume_stem(p) for p in images])
    ds.in_chans = 1
    ds.spatial_dims = 3  # the model must be a 3-D one (model.spatial_dims=3)
    return ds

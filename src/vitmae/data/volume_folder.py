"""A user's scans in class folders: `<root>/<split>/<class>/*.npy|*.nii|*.nii.gz`.

The volume counterpart of `vitmae.data.folder` (the same class-folder rules: sorted
sub-folder names are the classes, both splits' class folders are compared at start unless
`data.allow_class_mismatch`). Each file is one (D, H, W) volume read by
`vitmae.data.volume_io` (a bad one raises a BadVolumeError naming it, skipped under
`data.skip_bad`), scaled to [0, 1] (clipped to data.volume.intensity_range when set, else
per volume min-max), resized to data.img_size^3 and normalised with mean 0.5, std 0.25
unless data.mean / data.std say otherwise.
"""

from __future__ import annotations

from vitmae.config import DataConfig
from vitmae.data.folder import ClassFolderDataset, check_class_folders, split_classes
from vitmae.data.registry import norm_stats, register_dataset
from vitmae.data.volume_io import VOLUME_EXTENSIONS, is_volume, read_volume
from vitmae.data.volume_transforms import VolumeTransform, intensity_range

MEAN, STD = (0.5,), (0.25,)  # of voxels scaled to [0, 1]; data.mean / data.std win


@register_dataset("volume_folder")
def build_volume_folder(cfg: DataConfig, split: str, train: bool) -> ClassFolderDataset:
    folder, classes = split_classes(cfg, split, f"<root>/{split}/<class>/*.npy|*.nii.gz",
                                    "volumes")
    mean, std = norm_stats(cfg, MEAN, STD)
    ds = ClassFolderDataset(folder, VolumeTransform(
        cfg.img_size, mean, std, train, intensity_range=intensity_range(cfg.volume),
        permute_axes=cfg.volume.permute_axes), classes,
                            is_volume, read_volume, "volumes", VOLUME_EXTENSIONS)
    check_class_folders(cfg, split, is_volume, "volumes")
    ds.in_chans, ds.mean, ds.std = 1, mean, std
    ds.spatial_dims = 3  # the model must be a 3-D one (model.spatial_dims=3)
    return ds

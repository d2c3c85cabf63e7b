"""A user's scans in class folders: `<root>/<split>/<class>/*.npy|*.nii|*.nii.gz`.

The volume counterpart of `vitmae.data.folder` (the same class-folder rules: sorted
sub-folder names are the classes, both splits' class folders are compared at start unless
`data.allow_class_mismatch`). Each file is one (D, H, W) volume read by
`vitmae.data.volume_io` (a bad one raises a BadVolumeError naming it, skipped under
`data.skip_bad`), scaled to [0, 1] per volume, resized to data.img_size^3 and normalised
with mean 0.5, std 0.25 unless data.mean / data.std say otherwise.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from vitmae.config import DataConfig
from vitmae.data.checks import BadDataError
from vitmae.data.folder import class_names, class_problems, splits_of
from vitmae.data.registry import norm_stats, register_dataset
from vitmae.data.root import data_root, missing_data_error
from vitmae.data.volume_io import VOLUME_EXTENSIONS, is_volume, read_volume
from vitmae.data.volume_transforms import VolumeTransform

MEAN, STD = (0.5,), (0.25,)  # of voxels scaled to [0, 1]; data.mean / data.std win


class VolumeFolderDataset(Dataset):
    """Items: (volume (1, S, S, S) float32, class index)."""

    spatial_dims = 3  # the model must be a 3-D one (model.spatial_dims=3)

    def __init__(self, folder: Path, transform: VolumeTransform, classes: list[str]):
        self.folder, self.transform, self.classes = Path(folder), transform, list(classes)
        self.samples = [(p, k) for k, c in enumerate(self.classes)
                        for p in sorted((self.folder / c).rglob("*")) if is_volume(p)]
        if not self.samples:
            raise FileNotFoundError(f"{self.folder}: no volumes in class sub-folders (expected "
                                    f"{self.folder}/<class>/*{'|*'.join(VOLUME_EXTENSIONS)})")
        self.num_classes, self.in_chans = len(self.classes), 1
        self.mean, self.std = transform.mean_std

    def __len__(self) -> int:
        return len(self.samples)

    def files(self, i: int) -> list[Path]:
        return [self.samples[i][0]]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path, target = self.samples[i]
        return self.transform(read_volume(path)), target


@register_dataset("volume_folder")
def build_volume_folder(cfg: DataConfig, split: str, train: bool) -> VolumeFolderDataset:
    folder = data_root(cfg) / split
    if not folder.is_dir():
        raise missing_data_error(f"volume folder split '{split}' (layout <root>/{split}/<class>/"
                                 f"*.npy|*.nii.gz)", [folder], download=False)
    folders = splits_of(cfg, split)
    classes = sorted(set().union(*map(class_names, folders)))
    mean, std = norm_stats(cfg, MEAN, STD)
    ds = VolumeFolderDataset(folder, VolumeTransform(cfg.img_size, mean, std, train), classes)
    problems = class_problems(folders, is_volume, "volumes")
    if problems and not cfg.allow_class_mismatch:
        raise BadDataError("volume folder classes: " + "; ".join(problems) + ". Fix the "
                           "folders, or pass data.allow_class_mismatch=true to train on the "
                           "union of the class folders of both splits")
    return ds

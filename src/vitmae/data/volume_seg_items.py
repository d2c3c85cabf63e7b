"""Items of a segmentation data set of scans: a (volume, mask) file pair -> a training cube
or a whole evaluation volume (`volume_seg_folder`).

Both files are read in stored axis order (`vitmae.data.volume_io`) and must have one shape;
the mask's values must be whole numbers, each a class or 255 (void). With
data.volume.spacing set, both are resampled to it from the NIfTI header's voxel sizes (the
volume trilinearly, the mask by nearest voxel; .npy files count as being at that spacing
already). Voxels are scaled to [0, 1] (`to_unit`: clipped to data.volume.intensity_range,
else the volume's min-max) and normalised by (mean, std).
  training items: (vol (1, S, S, S) float32, mask (S, S, S) int64), S = data.img_size: a
      random S^3 cube (a volume smaller than S along an axis is padded first: 0 in [0, 1] units
      and void), centred with probability data.volume.foreground_crop on a uniformly drawn
      voxel of a class other than 0 (MONAI's RandCropByPosNegLabel), else placed uniformly;
      then a flip along each axis with probability 1/2 and intensity jitter x * (1 + a) + b,
      a, b uniform in [-0.1, 0.1], as `vitmae.data.volume_transforms`. Every draw comes from
      torch's default generator, which the loader seeds per item.
  evaluation items: (vol (1, Dm, Hm, Wm), mask (Dm, Hm, Wm) int64, size (3,) = the
      resampled (D0, H0, W0)), padded (0 / void) to the split's largest resampled volume so
      that they batch; the task segments each unpadded volume by overlapping cubes
      (`vitmae.tasks.sliding_window`) and scores it at the resampled spacing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vitmae.data.checks import BadDataError, BadMaskError, check_mask
from vitmae.data.palette import VOID
from vitmae.data.volume_io import read_spacing, read_volume, stored_shape
from vitmae.data.volume_transforms import intensity_range, to_unit

JITTER = 0.1  # as VolumeTransform's intensity jitter


def read_volume_mask(path: Path) -> np.ndarray:
    """A mask volume (.npy / NIfTI, any number dtype) -> (D, H, W) int64; BadMaskError naming
    the file when a value is not a whole number (NIfTI masks are often stored as floats)."""
    a = read_volume(path)
    if not np.issubdtype(a.dtype, np.integer):
        if not np.array_equal(a, np.round(a)):
            raise BadMaskError(f"{path}: mask voxels must be whole numbers (class indices), "
                               f"found fractional values", path)
    return a.astype(np.int64)


def resampled_size(shape: tuple[int, ...], spacing: tuple | None,
                   target: tuple | None) -> tuple[int, int, int]:
    """The (D, H, W) of a volume of `shape` at voxel size `spacing` once resampled to
    `target`: round(shape * spacing / target), at least 1; unchanged without both."""
    if spacing is None or target is None:
        return tuple(int(n) for n in shape[:3])
    return tuple(max(1, round(n * s / t)) for n, s, t in zip(shape[:3], spacing, target,
                                                              strict=True))


def unit_scan(path: Path, window: tuple[float, float] | None, spacing: tuple | None
              ) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """A scan -> its voxels (D, H, W) in [0, 1] as stored (`to_unit` with the intensity
    `window`) and its size at `spacing` (from the NIfTI header; unchanged without one)."""
    vol = to_unit(read_volume(path), window)  # (D, H, W)
    return vol, resampled_size(vol.shape, read_spacing(path) if spacing else None, spacing)


def resize3d(x: torch.Tensor, size: tuple[int, int, int], labels: bool = False
             ) -> torch.Tensor:
    """x (D, H, W) -> (D', H', W') = `size`: trilinear for voxels, nearest voxel for labels."""
    if tuple(x.shape) == tuple(size):
        return x
    if labels:
        return F.interpolate(x[None, None].float(), size=size,
                             mode="nearest-exact")[0, 0].long()  # (D', H', W')
    return F.interpolate(x[None, None], size=size, mode="trilinear",
                         align_corners=False)[0, 0]  # (D', H', W')


def pad_end(x: torch.Tensor, size: tuple[int, ...], value: float) -> torch.Tensor:
    """x (..., D, H, W) -> at least `size` along its last three axes, padded at the far end
    with `value`."""
    pad = [max(0, s - n) for s, n in zip(size, x.shape[-3:], strict=True)]
    if not any(pad):
        return x
    return F.pad(x, [v for p in reversed(pad) for v in (0, p)],  # F.pad: last axis first
                 value=value)


def pad_to(vol: torch.Tensor, mask: torch.Tensor, size: tuple[int, ...], value: float = 0.0
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """vol (..., D, H, W), mask (D, H, W) -> at least `size` along each axis, padded at the
    far end with `value` (the volume) and VOID (the mask)."""
    return pad_end(vol, size, value), pad_end(mask, size, VOID)


def crop_start(mask: torch.Tensor, size: int, foreground: float) -> list[int]:
    """The corner of a size^3 cube in `mask` (D, H, W) (each side >= size): centred on a
    random voxel of a class other than 0 and void with probability `foreground` (when there
    is one), else uniform."""
    limits = [n - size for n in mask.shape]  # the largest corner per axis
    if torch.rand(()) < foreground:
        fg = ((mask > 0) & (mask != VOID)).nonzero()  # (N, 3)
        if len(fg):
            centre = fg[torch.randint(len(fg), ())].tolist()
            return [min(max(c - size // 2, 0), m) for c, m in zip(centre, limits, strict=True)]
    return [int(torch.randint(m + 1, ())) for m in limits]


class VolumeSegItems:
    """Reads (volume, mask) file pairs into training cubes or evaluation volumes."""

    def __init__(self, num_classes: int, img_size: int, mean: tuple, std: tuple, train: bool,
                 volume_cfg, image_paths: list[Path]):
        self.K, self.size, self.train = num_classes, img_size, train
        self.mean, self.std = float(mean[0]), float(std[0])
        self.spacing = tuple(volume_cfg.spacing) if volume_cfg.spacing else None
        self.intensity_range = intensity_range(volume_cfg)
        self.foreground = volume_cfg.foreground_crop
        if not train:
            sizes = [self.stored_size(p) for p in image_paths]
            sizes = [s for s in sizes if s is not None] or [(1, 1, 1)]
            self.pad_to = tuple(max(s[i] for s in sizes) for i in range(3))  # (Dm, Hm, Wm)

    def stored_size(self, path: Path) -> tuple[int, int, int] | None:
        """A file's size once resampled, from its header (None if unreadable)."""
        shape = stored_shape(path)
        if shape is None or len(shape) < 3:
            return None
        try:
            spacing = read_spacing(path) if self.spacing else None
        except BadDataError:
            return None
        return resampled_size(shape, spacing, self.spacing)

    def normalise(self, vol: torch.Tensor) -> torch.Tensor:
        """(..., D, H, W) in [0, 1] -> (1, D, H, W) normalised."""
        return ((vol - self.mean) / self.std).reshape(1, *vol.shape[-3:])

    def __call__(self, image_path: Path, mask_path: Path):
        vol, size = unit_scan(image_path, self.intensity_range, self.spacing)  # (D, H, W)
        mask = read_volume_mask(mask_path)  # (D, H, W)
        if tuple(vol.shape) != mask.shape:
            raise BadMaskError(f"{mask_path}: mask {mask.shape} and volume {image_path} "
                               f"{tuple(vol.shape)} differ in shape", mask_path)
        check_mask(mask, self.K, mask_path)
        vol, mask = resize3d(vol, size), resize3d(torch.from_numpy(mask), size, labels=True)
        if self.train:
            return self.cube(vol, mask)
        out = torch.tensor(vol.shape)  # (3,) the resampled (D0, H0, W0)
        vol, mask = pad_to(vol, mask, self.pad_to)  # (Dm, Hm, Wm)
        return self.normalise(vol), mask, out

    def cube(self, vol: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """vol, mask (D, H, W) -> a random augmented (1, S, S, S) cube and its (S, S, S) mask."""
        S = self.size
        vol, mask = pad_to(vol, mask, (S, S, S))
        z, y, x = crop_start(mask, S, self.foreground)
        vol, mask = vol[z:z + S, y:y + S, x:x + S], mask[z:z + S, y:y + S, x:x + S]
        flips = [d for d in (0, 1, 2) if torch.rand(()) < 0.5]
        if flips:
            vol, mask = vol.flip(flips), mask.flip(flips)
        a, b = (torch.rand(2) * 2 - 1) * JITTER
        return self.normalise(vol * (1 + a) + b), mask.contiguous()  # (1, S, S, S), (S, S, S)


def mae_items(ds: Dataset, size: int) -> Dataset:
    """What an MAE of size^3 cubes reads of an evaluation split: the centre cubes of a
    segmentation set's whole, padded scans; any other data set as it is."""
    whole_scans = getattr(ds, "spatial_dims", 2) == 3 and getattr(ds, "pad_to", None)
    return CentreCubes(ds, size) if whole_scans else ds


class CentreCubes(Dataset):
    """Evaluation items of whole volumes -> (the centre S^3 cube of each unpadded volume
    (1, S, S, S), its mask (S, S, S)): what a model of cubes can be validated on without a
    sliding window (MAE pretraining's validation loss). A volume smaller than S along an axis
    is padded with the normalised 0 and void."""

    def __init__(self, dataset: Dataset, size: int):
        self.dataset, self.size = dataset, size

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "dataset":  # unpickling: not yet set
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        vol, mask, size = self.dataset[i]  # (1, Dm, Hm, Wm), (Dm, Hm, Wm), (3,)
        d, h, w = size.tolist()
        S, zero = self.size, -self.dataset.mean[0] / self.dataset.std[0]
        vol, mask = pad_to(vol[:, :d, :h, :w], mask[:d, :h, :w], (S, S, S), zero)
        z, y, x = ((n - S) // 2 for n in mask.shape)
        return vol[:, z:z + S, y:y + S, x:x + S], mask[z:z + S, y:y + S, x:x + S]

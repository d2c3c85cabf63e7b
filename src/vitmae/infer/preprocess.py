"""How an image file becomes a model's input, outside any data set: `Preprocess`.

A trained run uses its data set's own evaluation transform: `folder` runs resize the shorter
side to S and take the centre S x S (`data.transforms.folder_transform`); every other data
set resizes the image to S x S without keeping the aspect ratio (VOC's `eval_image_transform`;
the in-memory sets digits, MNIST and CIFAR resize their fixed-size images the same way).
A plain weights file (timm, HuggingFace, MAE) gets timm's ImageNet evaluation: the shorter
side to S / crop_pct (bicubic, with Pillow; crop_pct 0.875), then the centre S x S. A run
on volumes (`spatial_dims=3`) reads `.npy` / NIfTI files and uses its data sets' evaluation
transform (`vitmae.data.volume_transforms.VolumeTransform`: to [0, 1], trilinear resize to
S^3, normalised); a 3-D segmentation run keeps each scan whole ("window": resampled to the
run's voxel spacing, segmented by overlapping S^3 cubes, `vitmae.infer.predict_volumes`).
The spec is plain data, so that an ONNX file carries it in its metadata.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from vitmae.data.checks import open_image
from vitmae.data.volume_io import read_volume
from vitmae.data.volume_transforms import VolumeTransform
from vitmae.errors import UsageError

CROP_DATASETS = ("folder",)  # data sets whose evaluation keeps the aspect ratio and crops
WEIGHTS_CROP_PCT = 0.875  # timm's default evaluation crop for ImageNet models
MODES = {1: "L", 3: "RGB"}


@dataclass
class Preprocess:
    img_size: int  # S: the model's input is (C, S, S)
    in_chans: int  # 1: decoded as grey ('L'), 3: as RGB
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "squash"  # "squash": to S x S; "crop": shorter side to S / crop_pct, centre S
    crop_pct: float = 1.0
    interpolation: str = "bilinear"  # or "bicubic"
    # "torch": resize the decoded tensor (vitmae's data sets); "pil": resize the Pillow image
    # before it becomes a tensor (timm's evaluation transform)
    resize_with: str = "torch"
    spatial_dims: int = 2  # 3: the model's input is a volume (1, S, S, S)
    # volumes: [lo, hi] clipped and scaled to [0, 1] (data.volume.intensity_range); None:
    # each volume's min-max
    intensity_range: tuple[float, float] | None = None
    # resize "window" (3-D segmentation): the voxel size scans are resampled to
    # (data.volume.spacing; None: as stored), and the overlap of the S^3 cubes
    spacing: tuple[float, float, float] | None = None
    overlap: float = 0.5

    def __post_init__(self):
        if self.spatial_dims not in (2, 3):
            raise UsageError(f"spatial_dims: expected 2 (images) or 3 (volumes), got "
                             f"{self.spatial_dims}")
        if self.spatial_dims == 3 and self.in_chans != 1:
            raise UsageError(f"volumes have 1 channel, got in_chans={self.in_chans}")
        if self.in_chans not in MODES:
            raise UsageError(f"images of {self.in_chans} channels: only 1 (grey) or 3 (RGB)")
        if self.resize not in ("squash", "crop", "window"):
            raise UsageError(f"resize: expected 'squash', 'crop' or 'window', got "
                             f"{self.resize!r}")
        if self.resize == "window" and self.spatial_dims != 3:
            raise UsageError("resize 'window' (overlapping cubes) is for volumes")
        if self.resize_with not in ("torch", "pil"):
            raise UsageError(f"resize_with: expected 'torch' or 'pil', got {self.resize_with!r}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise UsageError(f"crop_pct: must be in (0, 1], got {self.crop_pct}")
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        for key in ("intensity_range", "spacing"):  # lists when read back from JSON
            if getattr(self, key) is not None:
                setattr(self, key, tuple(float(v) for v in getattr(self, key)))
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise UsageError(f"mean {list(self.mean)}, std {list(self.std)}: expected "
                             f"{self.in_chans} values each, one per channel")
        self._steps = self._build()

    def _build(self) -> v2.Compose | VolumeTransform:
        S = self.img_size
        if self.spatial_dims == 3:
            if self.resize == "crop":
                raise UsageError("a volume is resized whole to S^3: no centre crop (crop_pct)")
            return VolumeTransform(S, self.mean, self.std, train=False,
                                   intensity_range=self.intensity_range)
        mode = v2.InterpolationMode(self.interpolation)
        if self.resize == "squash":
            size = [v2.Resize((S, S), interpolation=mode, antialias=True)]
        else:
            size = [v2.Resize(int(S / self.crop_pct), interpolation=mode, antialias=True),
                    v2.CenterCrop(S)]
        steps = [*size, v2.ToImage()] if self.resize_with == "pil" else [v2.ToImage(), *size]
        return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True),
                           v2.Normalize(self.mean, self.std)])

    @property
    def mode(self) -> str:
        return MODES[self.in_chans]

    @property
    def volumes(self) -> bool:
        return self.spatial_dims == 3

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(C, S, S), or (1, S, S, S) for volumes: one input item."""
        return (self.in_chans, *(self.img_size,) * self.spatial_dims)

    def read(self, path: str | Path) -> Image.Image | np.ndarray:
        """Decode `path` in the model's colour mode, or read the volume (D, H, W); a
        BadDataError naming it if it cannot be read."""
        return read_volume(path) if self.volumes else open_image(path, self.mode)

    def __call__(self, item: Image.Image | np.ndarray) -> torch.Tensor:
        """A PIL image of any size -> (C, S, S), or a volume (D, H, W) of any size ->
        (1, S, S, S); float32, normalized."""
        return self._steps(item).as_subclass(torch.Tensor)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        return cls(**d)


def for_dataset(dataset: str, img_size: int, in_chans: int, mean, std,
                spatial_dims: int = 2, volume_cfg=None, task: str = "classify") -> Preprocess:
    """The evaluation transform of a run trained on `dataset` (of volumes: spatial_dims=3,
    read as `volume_cfg` = its data.volume says)."""
    if spatial_dims == 2:
        resize = "crop" if dataset in CROP_DATASETS else "squash"
        return Preprocess(img_size, in_chans, tuple(mean), tuple(std), resize)
    v = volume_cfg
    return Preprocess(img_size, in_chans, tuple(mean), tuple(std),
                      "window" if task == "segment" else "squash", spatial_dims=3,
                      intensity_range=v.intensity_range if v else None,
                      spacing=v.spacing if v else None, overlap=v.overlap if v else 0.5)


def for_weights(img_size: int, in_chans: int, mean, std,
                crop_pct: float = WEIGHTS_CROP_PCT) -> Preprocess:
    """timm's ImageNet evaluation transform for a plain weights file."""
    return Preprocess(img_size, in_chans, tuple(mean), tuple(std), "crop", crop_pct, "bicubic",
                      "pil")

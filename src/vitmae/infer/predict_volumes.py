"""`vitmae predict` for a 3-D segmentation run: each whole scan segmented by overlapping cubes.

A scan (.nii.gz / .nii / .npy) is read as its run's evaluation reads it
(`vitmae.data.volume_seg_items`: scaled to [0, 1] by data.volume.intensity_range or its
min-max, resampled to data.volume.spacing from the NIfTI header, normalised), segmented by
overlapping cubes of the model's size (`vitmae.tasks.sliding_window`; torch or ONNX), and
the logits resampled back to the scan's own grid before the argmax, so that the mask lies
voxel for voxel on the scan: `<name>.nii.gz` with the scan's affine for NIfTI input,
`<name>.npy` for .npy input, uint8 (int16 past 255 classes), under the output folder. One JSON
line per scan: `{"path", "mask", "classes": [{"index", "class", "fraction"}]}` with the share
of the scan's voxels in each class present.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vitmae.data.checks import BadDataError
from vitmae.data.volume_io import VOLUME_EXTENSIONS
from vitmae.data.volume_seg_items import resize3d, unit_scan
from vitmae.infer.model import InferenceModel
from vitmae.tasks.sliding_window import sliding_window


def volume_mask_name(rel: Path) -> Path:
    """scan.nii.gz / scan.nii -> scan.nii.gz, scan.npy -> scan.npy (the input's format)."""
    name = rel.name
    ext = next(e for e in VOLUME_EXTENSIONS if name.lower().endswith(e))
    stem = name[: len(name) - len(ext)]
    return rel.with_name(stem + (".npy" if ext == ".npy" else ".nii.gz"))


def segment_scan(model: InferenceModel, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """-> the (D, H, W) labels of the scan at `path`, on its own grid, and its (D, H, W)
    voxels as read, scaled to [0, 1]."""
    pre = model.preprocess
    vol, size = unit_scan(path, pre.intensity_range, pre.spacing)  # (D, H, W) in [0, 1]
    x = ((resize3d(vol, size) - pre.mean[0]) / pre.std[0])[None]  # (1, D', H', W')
    logits = sliding_window(model.logits, x, pre.img_size, pre.overlap,
                            pad_value=-pre.mean[0] / pre.std[0])  # (K, D', H', W')
    if tuple(logits.shape[1:]) != tuple(vol.shape):  # back to the scan's grid, then the argmax
        logits = F.interpolate(logits[None], size=tuple(vol.shape), mode="trilinear",
                               align_corners=False)[0]  # (K, D, H, W)
    return logits.argmax(0), vol


def save_mask(labels: torch.Tensor, scan: Path, out: Path) -> None:
    """labels (D, H, W) -> `out` (.nii.gz with the scan's affine, or .npy)."""
    a = labels.numpy().astype(np.uint8 if int(labels.max()) <= 255 else np.int16)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.name.endswith(".npy"):
        np.save(out, a)
        return
    import nibabel as nib  # read_volume has already needed it for a NIfTI scan

    nib.save(nib.Nifti1Image(a, nib.load(scan).affine), out)


def predict_scans(model: InferenceModel, paths: Sequence[Path], names: dict[Path, Path],
                  failed: list[tuple[Path, str]]) -> Iterator[dict]:
    """Segment and save every scan, yielding its record; a scan that cannot be read goes to
    `failed`."""
    for path in paths:
        try:
            labels, _ = segment_scan(model, path)
        except BadDataError as e:
            failed.append((path, str(e)))
            continue
        save_mask(labels, path, names[path])
        counts = torch.bincount(labels.flatten(), minlength=model.num_classes)  # (K,)
        present = [{"index": k, "class": model.class_name(k), "fraction": c / labels.numel()}
                   for k, c in enumerate(counts.tolist()) if c]
        yield {"path": str(path), "mask": str(names[path]), "classes": present}

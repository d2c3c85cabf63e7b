"""Reading one volume file: NumPy `.npy` or NIfTI `.nii` / `.nii.gz` (through nibabel).

`read_volume(path)` -> a (D, H, W) array in the file's dtype. A trailing axis of size 1
(NIfTI's (X, Y, Z, 1)) is dropped; any other shape, an empty or non-finite volume, or a
file that cannot be read raises a `BadVolumeError` naming the file (skipped under
`data.skip_bad`, listed by `vitmae check-data`). The array is taken in its stored axis order
(NIfTI orientation is not applied); `read_spacing` gives a NIfTI file's voxel size per axis
(its header's zooms), `stored_shape` a file's shape without reading its voxels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vitmae.data.checks import BadDataError, MissingFileError
from vitmae.errors import UserError

VOLUME_EXTENSIONS = (".npy", ".nii", ".nii.gz")


class BadVolumeError(BadDataError):
    """A volume file that cannot be read, or whose array is not one 3-D volume."""


def is_volume(p: Path) -> bool:
    return p.name.lower().endswith(VOLUME_EXTENSIONS) and p.is_file()


def read_volume(path: str | Path) -> np.ndarray:
    """`path` (.npy, .nii, .nii.gz) -> (D, H, W) array; BadVolumeError naming the file."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file", path)
    nifti = not path.name.lower().endswith(".npy")
    nib = _nibabel() if nifti else None
    try:
        a = np.asarray(nib.load(path).dataobj) if nifti else np.load(path, allow_pickle=False)
    except MemoryError:
        raise
    except Exception as e:  # numpy and nibabel raise many kinds on a damaged file
        raise BadVolumeError(f"cannot read volume {path}: {type(e).__name__}: {e} (expected "
                             f"a .npy array or a NIfTI file)", path) from e
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]  # (X, Y, Z, 1): NIfTI's single-channel 4-D layout
    if a.ndim != 3 or 0 in a.shape:
        raise BadVolumeError(f"{path}: a volume must be a 3-D array (D, H, W), found shape "
                             f"{tuple(a.shape)}", path)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
            or a.dtype == np.bool_):
        raise BadVolumeError(f"{path}: voxels of dtype {a.dtype}, expected numbers", path)
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise BadVolumeError(f"{path}: the volume has NaN or infinite voxels", path)
    return a


def read_spacing(path: str | Path) -> tuple[float, float, float] | None:
    """The voxel size per array axis from a NIfTI header (its units, usually mm); None for
    .npy files, which have no header."""
    path = Path(path)
    if path.name.lower().endswith(".npy"):
        return None
    try:
        zooms = _nibabel().load(path).header.get_zooms()
    except Exception as e:  # as read_volume: a damaged header is named
        raise BadVolumeError(f"cannot read the NIfTI header of {path}: {type(e).__name__}: "
                             f"{e}", path) from e
    if len(zooms) < 3 or not all(z > 0 for z in zooms[:3]):
        raise BadVolumeError(f"{path}: voxel sizes {tuple(zooms)} in the header; expected "
                             f"three sizes > 0", path)
    return tuple(float(z) for z in zooms[:3])


def stored_shape(path: str | Path) -> tuple[int, ...] | None:
    """A volume file's array shape from its header alone (None if it cannot be read: the
    item that reads it names the file)."""
    path = Path(path)
    try:
        if path.name.lower().endswith(".npy"):
            return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
        return tuple(_nibabel().load(path).shape)
    except Exception:  # reported, naming the file, when the item is read
        return None


def _nibabel():
    """nibabel, an optional dependency that only NIfTI files need."""
    try:
        import nibabel
    except ImportError:
        raise UserError("reading NIfTI volumes needs nibabel: pip install nibabel (or "
                        "vitmae[volumes])") from None
    return nibabel

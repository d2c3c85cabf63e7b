"""Tiny generated volume data for the tests: a fake MedMNIST 3-D file and scan folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPLIT_SIZES = {"train": 12, "val": 6, "test": 6}


def fake_medmnist3d(root: Path, name: str = "adrenal", side: int = 8, seed: int = 0) -> Path:
    """<root>/medmnist3d/<name>mnist3d.npz in the official layout: binary shape masks
    (0 / 255 voxels) of side^3, labels (N, 1), both classes in every split. Class 1 has a
    bigger blob, so that the label can be learned."""
    rng = np.random.default_rng(seed)
    arrays = {}
    zz, yy, xx = np.mgrid[:side, :side, :side] - (side - 1) / 2
    r = np.sqrt(zz ** 2 + yy ** 2 + xx ** 2)
    for split, n in SPLIT_SIZES.items():
        labels = (np.arange(n) % 2).astype(np.uint8)
        radius = side / 5 + labels[:, None, None, None] * side / 5
        noise = rng.normal(0, side / 16, (n, side, side, side))
        arrays[f"{split}_images"] = ((r + noise < radius) * 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None]
    path = root / "medmnist3d" / f"{name}mnist3d.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def volume_folder(root: Path, side: int = 6) -> Path:
    """<root>/{train,val}/{a,b}/*.npy: 3 + 2 volumes per split, float voxels."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls, n in (("a", 3), ("b", 2)):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                np.save(root / split / cls / f"{i}.npy",
                        rng.normal(100, 50, (side, side + 1, side)).astype(np.float32))
    return root


def seg_scans(root: Path, shapes=((12, 10, 14), (9, 13, 11), (14, 14, 8)),
              spacing=(1.0, 1.0, 1.0), nifti: bool = True, seed: int = 0) -> Path:
    """<root>/{train,val}/{images,masks}/scan<i>.nii.gz (or .npy): CT-like noise (about 0
    +- 20) with a bright ball (class 1, about 200) and a dark cube (class 2, about -150) at
    random places, one scan per shape in each split; masks of the same name and shape, stored
    as float32 (as NIfTI label files often are). `spacing` goes into the NIfTI affine."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i, shape in enumerate(shapes):
            vol, mask = seg_scan(shape, rng)
            save_volume(vol, root / split / "images" / f"scan{i}", spacing, nifti)
            save_volume(mask.astype(np.float32), root / split / "masks" / f"scan{i}", spacing,
                        nifti)
    return root


def seg_scan(shape, rng) -> tuple[np.ndarray, np.ndarray]:
    """One (D, H, W) scan and its mask: a ball of radius 3 (class 1), a cube of side 3
    (class 2), not overlapping."""
    mask = np.zeros(shape, np.int64)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), -1)
    centre = np.array([rng.integers(3, n - 2) for n in shape])  # each side >= 6
    mask[np.linalg.norm(grid - centre, axis=-1) <= 3] = 1
    for _ in range(100):  # a cube corner clear of the ball
        corner = np.array([rng.integers(0, n - 3) for n in shape])
        box = tuple(slice(c, c + 3) for c in corner)
        if not mask[box].any():
            mask[box] = 2
            break
    vol = rng.normal(0, 20, shape) + np.array([0, 200, -150])[mask]
    return vol.astype(np.float32), mask


def save_volume(a: np.ndarray, stem: Path, spacing, nifti: bool) -> Path:
    """`a` as <stem>.nii.gz with voxel sizes `spacing`, or as <stem>.npy."""
    if not nifti:
        np.save(stem.with_name(stem.name + ".npy"), a)
        return stem.with_name(stem.name + ".npy")
    import nibabel as nib

    path = stem.with_name(stem.name + ".nii.gz")
    nib.save(nib.Nifti1Image(a, np.diag([*spacing, 1.0])), path)
    return path

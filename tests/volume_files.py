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

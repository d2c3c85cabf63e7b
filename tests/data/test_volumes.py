"""Volume data: MedMNIST 3-D, scan folders (.npy, NIfTI), bad volumes, 3-D augmentation."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from volume_files import SPLIT_SIZES, fake_medmnist3d, volume_folder

from vitmae.config import Config, DataConfig
from vitmae.data import build_dataset
from vitmae.data.audit import run_check_data
from vitmae.data.checks import BadDataError
from vitmae.data.loader import SeededSamples
from vitmae.data.volume_io import BadVolumeError, read_volume
from vitmae.data.volume_transforms import VolumeTransform, shift

nibabel = pytest.importorskip("nibabel")


def medmnist_cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(**{"dataset": "medmnist3d", "root": str(root), "img_size": 8, **kw})


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_medmnist3d_items(tmp_path, split):
    fake_medmnist3d(tmp_path)
    ds = build_dataset(medmnist_cfg(tmp_path), split, train=False)
    assert (len(ds), ds.classes, ds.in_chans, ds.spatial_dims) == (
        SPLIT_SIZES[split], ["normal", "hyperplasia"], 1, 3)
    vol, label = ds[1]
    assert vol.shape == (1, 8, 8, 8) and vol.dtype == torch.float32 and label == 1


def test_medmnist3d_is_normalised_by_the_training_split(tmp_path):
    fake_medmnist3d(tmp_path)
    ds = build_dataset(medmnist_cfg(tmp_path), "train", train=False)
    vols = torch.stack([ds[i][0] for i in range(len(ds))])
    assert abs(vols.mean().item()) < 1e-4 and abs(vols.std().item() - 1) < 1e-2
    val = build_dataset(medmnist_cfg(tmp_path), "val", train=False)
    assert val.mean == ds.mean and val.std == ds.std


def test_medmnist3d_resizes_to_img_size_and_picks_the_file(tmp_path):
    fake_medmnist3d(tmp_path, name="vessel")
    cfg = medmnist_cfg(tmp_path, img_size=4)
    cfg.medmnist3d.name = "vessel"
    ds = build_dataset(cfg, "train", train=True)
    assert ds[0][0].shape == (1, 4, 4, 4) and ds.classes == ["vessel", "aneurysm"]
    cfg.medmnist3d.name = "adrenal"
    with pytest.raises(FileNotFoundError, match="adrenalmnist3d.npz"):
        build_dataset(cfg, "train", train=True)
    cfg.medmnist3d.size = 64
    with pytest.raises(FileNotFoundError, match="adrenalmnist3d_64.npz"):
        build_dataset(cfg, "train", train=True)


def test_augmentation_is_seeded_per_item_and_epoch(tmp_path):
    fake_medmnist3d(tmp_path)
    ds = build_dataset(medmnist_cfg(tmp_path), "train", train=True)
    a = [SeededSamples(ds, 0, 0)[i][0] for i in range(4)]
    b = [SeededSamples(ds, 0, 0)[i][0] for i in range(4)]
    c = [SeededSamples(ds, 0, 1)[i][0] for i in range(4)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_flips_and_shifts_move_voxels_without_changing_them():
    # Without intensity jitter and shift, an augmented volume is a flip of the input: the
    # same voxel values; a shift moves content and brings in zeros.
    vol = torch.arange(4 ** 3, dtype=torch.uint8).reshape(4, 4, 4)
    t = VolumeTransform(4, (0.0,), (1.0,), train=True, shift=0.0, jitter=0.0)
    seen = set()
    for seed in range(16):
        torch.manual_seed(seed)
        out = t(vol)
        assert torch.equal(out.flatten().sort().values, vol.flatten().float().sort().values / 255)
        seen.add(tuple(out.flatten()[:2].tolist()))
    assert len(seen) > 1  # the flips vary
    v = torch.rand(1, 4, 4, 4)
    moved = shift(v, [1, 0, -2])
    assert torch.equal(moved[:, 1:, :, :2], v[:, :3, :, 2:])
    assert (moved[:, 0] == 0).all() and (moved[:, :, :, 2:] == 0).all()


def cube_symmetries(vol: torch.Tensor) -> set[bytes]:
    """The 48 images of a (S, S, S) volume under the cube's symmetries: every axis order
    with every set of flips."""
    out = set()
    for order in itertools.permutations(range(3)):
        for flips in itertools.product([False, True], repeat=3):
            v = vol.permute(order)
            v = v.flip([d for d in range(3) if flips[d]]) if any(flips) else v
            out.add(v.contiguous().numpy().tobytes())
    return out


@pytest.mark.parametrize("permute_axes", [False, True])
def test_permute_axes_reaches_every_symmetry_of_the_cube(permute_axes):
    # Without permute_axes the flips reach 8 of the cube's 48 symmetries; with it all 48, and
    # every output is one of them (voxels moved, none changed).
    vol = torch.arange(3 ** 3, dtype=torch.uint8).reshape(3, 3, 3)
    t = VolumeTransform(3, (0.0,), (1.0,), train=True, shift=0.0, jitter=0.0,
                        permute_axes=permute_axes)
    images = cube_symmetries(vol.float() / 255)
    seen = set()
    for seed in range(400):
        torch.manual_seed(seed)
        out = t(vol)[0].contiguous().numpy().tobytes()  # (S, S, S)
        assert out in images
        seen.add(out)
    assert len(seen) == (48 if permute_axes else 8)


def test_permute_axes_is_a_config_key(tmp_path):
    fake_medmnist3d(tmp_path)
    cfg = medmnist_cfg(tmp_path)
    cfg.volume.permute_axes = True
    assert build_dataset(cfg, "train", train=True).transform.permute_axes
    assert not build_dataset(medmnist_cfg(tmp_path), "train", train=True).transform.permute_axes


@pytest.mark.parametrize("suffix", [".npy", ".nii", ".nii.gz"])
def test_volume_files_round_trip(tmp_path, suffix):
    a = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    path = tmp_path / f"v{suffix}"
    if suffix == ".npy":
        np.save(path, a)
    else:
        nibabel.save(nibabel.Nifti1Image(a, np.eye(4)), path)
    np.testing.assert_array_equal(read_volume(path), a)


def test_nifti_single_channel_4d_is_one_volume(tmp_path):
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1)
    nibabel.save(nibabel.Nifti1Image(a, np.eye(4)), tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(read_volume(tmp_path / "v.nii.gz"), a[..., 0])


@pytest.mark.parametrize("name, content, match", [
    ("flat.npy", np.zeros((4, 4)), "3-D array"),
    ("multi.npy", np.zeros((2, 3, 4, 2)), "3-D array"),
    ("nan.npy", np.full((2, 2, 2), np.nan), "NaN"),
    ("junk.nii.gz", b"not a nifti file", "cannot read volume"),
    ("junk.npy", b"\x93NUMPY broken", "cannot read volume"),
])
def test_bad_volumes_are_named(tmp_path, name, content, match):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    with pytest.raises(BadVolumeError, match=match) as e:
        read_volume(path)
    assert str(path) in str(e.value) and e.value.path == str(path)


def test_volume_folder_items(tmp_path):
    volume_folder(tmp_path)
    cfg = DataConfig(dataset="volume_folder", root=str(tmp_path), img_size=4, val_split="val")
    ds = build_dataset(cfg, "train", train=True)
    assert (len(ds), ds.classes, ds.in_chans) == (5, ["a", "b"], 1)
    assert [ds[i][1] for i in range(5)] == [0, 0, 0, 1, 1]
    assert all(ds[i][0].shape == (1, 4, 4, 4) for i in range(5))


def test_volume_folder_bad_file_is_named_or_skipped(tmp_path):
    volume_folder(tmp_path)
    bad = tmp_path / "train" / "a" / "broken.nii.gz"
    bad.write_bytes(b"garbage")
    cfg = DataConfig(dataset="volume_folder", root=str(tmp_path), img_size=4, val_split="val")
    ds = build_dataset(cfg, "train", train=False)
    with pytest.raises(BadDataError, match="broken.nii.gz"):
        [ds[i] for i in range(len(ds))]
    cfg.skip_bad = True
    ds = build_dataset(cfg, "train", train=False)
    assert len([ds[i] for i in range(len(ds))]) == 6 and ds.bad_files == [str(bad)]


def test_volume_folder_class_mismatch_is_refused(tmp_path):
    volume_folder(tmp_path)
    (tmp_path / "val" / "c").mkdir()
    cfg = DataConfig(dataset="volume_folder", root=str(tmp_path), img_size=4, val_split="val")
    with pytest.raises(BadDataError, match="has no volumes"):
        build_dataset(cfg, "train", train=False)


@pytest.mark.skipif(not os.environ.get("VITMAE_DATA"), reason="real data: set VITMAE_DATA")
@pytest.mark.parametrize("name, n", [("adrenal", 1188), ("vessel", 1335)])
def test_real_medmnist3d(name, n):
    cfg = DataConfig(dataset="medmnist3d", img_size=28)
    cfg.medmnist3d.name = name
    ds = build_dataset(cfg, "train", train=False)
    vol, label = ds[0]
    assert len(ds) == n and vol.shape == (1, 28, 28, 28) and label in (0, 1)


def test_check_data_names_a_bad_volume(tmp_path):
    volume_folder(tmp_path)
    (tmp_path / "train" / "a" / "bad.npy").write_bytes(b"junk")
    cfg = Config(data=DataConfig(dataset="volume_folder", root=str(tmp_path), img_size=4,
                                 val_split="val"))
    lines: list[str] = []
    run_check_data(cfg, workers=0, out=lines.append)
    assert any("BadVolumeError" in s for s in lines) and any("bad.npy" in s for s in lines)

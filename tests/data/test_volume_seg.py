"""3-D segmentation data (`volume_seg_folder`): scans and masks paired by name, resampled to
a voxel spacing from the NIfTI header, random cubes (on labelled voxels when asked) for
training, whole padded volumes for evaluation, and bad files named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from volume_files import save_volume, seg_scan, seg_scans

from vitmae.config import Config, DataConfig
from vitmae.data import build_dataset
from vitmae.data.audit import run_check_data
from vitmae.data.checks import BadMaskError
from vitmae.data.loader import SeededSamples
from vitmae.data.palette import VOID
from vitmae.data.volume_seg_items import CentreCubes, resampled_size

nibabel = pytest.importorskip("nibabel")
SHAPES = ((12, 10, 14), (9, 13, 11), (14, 14, 8))


def seg_cfg(root: Path, **kw) -> DataConfig:
    cfg = DataConfig(dataset="volume_seg_folder", root=str(root), img_size=8, val_split="val")
    for k, v in kw.items():
        setattr(cfg.volume, k, v)
    return cfg


def test_items_pair_scans_with_masks_and_evaluation_pads_to_the_largest(tmp_path):
    seg_scans(tmp_path, SHAPES)
    ds = build_dataset(seg_cfg(tmp_path), "val", train=False)
    assert (len(ds), ds.classes, ds.in_chans, ds.spatial_dims) == (3, ["0", "1", "2"], 1, 3)
    assert ds.ids == ["scan0", "scan1", "scan2"] and ds.pad_to == (14, 14, 14)
    for i, shape in enumerate(SHAPES):
        vol, mask, size = ds[i]
        truth = np.asarray(nibabel.load(tmp_path / f"val/masks/scan{i}.nii.gz").dataobj)
        assert vol.shape == (1, 14, 14, 14) and mask.shape == (14, 14, 14)
        assert tuple(size.tolist()) == shape
        d, h, w = shape
        assert np.array_equal(mask[:d, :h, :w].numpy(), truth)  # voxel for voxel
        assert (mask == VOID).sum() == 14 ** 3 - d * h * w  # the padding is void
        # min-max to [0, 1], then mean 0.5 / std 0.25: the scan's extremes at -2 and 2
        assert vol[0, :d, :h, :w].min() == pytest.approx(-2) and vol.max() == pytest.approx(2)


def test_training_cubes_are_seeded_per_item_and_hold_a_label_when_asked(tmp_path):
    seg_scans(tmp_path, ((24, 24, 24), (20, 22, 26)))  # small objects in large scans
    always = SeededSamples(build_dataset(seg_cfg(tmp_path, foreground_crop=1.0), "train", True),
                           seed=0, epoch=0)
    never = SeededSamples(build_dataset(seg_cfg(tmp_path, foreground_crop=0.0), "train", True),
                          seed=0, epoch=0)
    cubes = [always[i] for i in range(2)]
    assert all(v.shape == (1, 8, 8, 8) and m.shape == (8, 8, 8) for v, m in cubes)
    again = [always[i] for i in range(2)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
               for a, b in zip(cubes, again, strict=True))
    labelled = [(SeededSamples(always.dataset, seed=s, epoch=0)[i][1] > 0).any().item()
                for s in range(10) for i in range(2)]
    uniform = [(SeededSamples(never.dataset, seed=s, epoch=0)[i][1] > 0).any().item()
               for s in range(10) for i in range(2)]
    assert all(labelled) and not all(uniform)


def test_nifti_scans_are_resampled_to_the_configured_spacing(tmp_path):
    # stored at 2 x 1 x 0.5 mm, resampled to 1 mm: the first axis doubles, the last halves
    seg_scans(tmp_path, ((6, 10, 16),), spacing=(2.0, 1.0, 0.5))
    ds = build_dataset(seg_cfg(tmp_path, spacing=[1.0, 1.0, 1.0]), "val", train=False)
    vol, mask, size = ds[0]
    assert tuple(size.tolist()) == (12, 10, 8) == ds.pad_to
    truth = np.asarray(nibabel.load(tmp_path / "val/masks/scan0.nii.gz").dataobj)
    # nearest-voxel labels: the ball's share of the volume survives, no new class appears
    assert set(mask.unique().tolist()) <= {0, 1, 2}
    assert (mask == 1).float().mean() == pytest.approx((truth == 1).mean(), abs=0.03)
    assert resampled_size((6, 10, 16), (2.0, 1.0, 0.5), (1.0, 1.0, 1.0)) == (12, 10, 8)


def test_npy_scans_count_as_being_at_the_configured_spacing(tmp_path):
    seg_scans(tmp_path, ((6, 10, 16),), nifti=False)
    ds = build_dataset(seg_cfg(tmp_path, spacing=[2.0, 2.0, 2.0]), "val", train=False)
    assert tuple(ds[0][2].tolist()) == (6, 10, 16)


def test_intensity_range_clips_then_scales(tmp_path):
    seg_scans(tmp_path, ((10, 10, 10),))
    ds = build_dataset(seg_cfg(tmp_path, intensity_range=[-50.0, 50.0]), "val", train=False)
    vol, mask, _ = ds[0]
    unit = vol * 0.25 + 0.5  # back to [0, 1]
    # the ball (about 200) is clipped to 1, the cube (about -150) to 0
    assert torch.allclose(unit[0][mask == 1], torch.ones(())) and \
        torch.allclose(unit[0][mask == 2], torch.zeros(()))


def test_mae_validation_takes_the_centre_cube_of_each_unpadded_scan(tmp_path):
    seg_scans(tmp_path, ((12, 10, 6),))
    ds = build_dataset(seg_cfg(tmp_path), "val", train=False)
    vol, mask = CentreCubes(ds, 8)[0]
    whole, whole_mask, _ = ds[0]
    assert vol.shape == (1, 8, 8, 8) and mask.shape == (8, 8, 8)
    # (12 - 8) // 2 = 2 and (10 - 8) // 2 = 1 from the corner; 6 < 8: padded with void
    assert torch.equal(vol[0, :, :, :6], whole[0, 2:10, 1:9, :6])
    assert (mask[:, :, 6:] == VOID).all() and (vol[0, :, :, 6:] == -2).all()  # normalised 0


@pytest.mark.parametrize("bad, match", [
    ("value", r"mask values 7 are outside the classes 0..2"),
    ("fraction", "whole numbers"),
    ("shape", r"differ in shape"),
])
def test_a_bad_mask_is_named_or_skipped(tmp_path, bad, match):
    seg_scans(tmp_path, SHAPES)
    (tmp_path / "classes.txt").write_text("background\nball\ncube\n")
    path = tmp_path / "val/masks/scan1.nii.gz"
    mask = np.asarray(nibabel.load(path).dataobj).copy()
    if bad == "value":
        mask[0, 0, 0] = 7
    elif bad == "fraction":
        mask[0, 0, 0] = 0.5
    else:
        mask = mask[:-1]
    save_volume(mask, path.with_name("scan1"), (1.0, 1.0, 1.0), nifti=True)
    ds = build_dataset(seg_cfg(tmp_path), "val", train=False)
    with pytest.raises(BadMaskError, match=match) as e:
        ds[1]
    assert "scan1.nii.gz" in str(e.value)
    cfg = seg_cfg(tmp_path)
    cfg.skip_bad = True
    ds = build_dataset(cfg, "val", train=False)
    assert len([ds[i] for i in range(3)]) == 3 and ds.bad_files == [str(path)]


def test_a_scan_without_a_mask_stops_the_build_naming_it(tmp_path):
    seg_scans(tmp_path, SHAPES)
    (tmp_path / "val/masks/scan2.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 3 scans .* have no mask .*scan2\.nii\.gz"):
        build_dataset(seg_cfg(tmp_path), "val", train=False)


def test_masks_in_another_format_than_their_scan_pair_by_name(tmp_path):
    seg_scans(tmp_path, SHAPES)
    vol, mask = seg_scan((8, 8, 8), np.random.default_rng(1))
    save_volume(vol, tmp_path / "val/images/extra", (1.0, 1.0, 1.0), nifti=True)
    save_volume(mask, tmp_path / "val/masks/extra", None, nifti=False)  # extra.npy
    ds = build_dataset(seg_cfg(tmp_path), "val", train=False)
    assert ds.ids == ["extra", "scan0", "scan1", "scan2"]
    assert np.array_equal(ds[0][1][:8, :8, :8].numpy(), mask)


def test_check_data_reads_every_scan_and_counts_classes(tmp_path):
    seg_scans(tmp_path, SHAPES)
    (tmp_path / "train/images/broken.nii.gz").write_bytes(b"junk")
    (tmp_path / "train/masks/broken.nii.gz").write_bytes(b"junk")
    lines: list[str] = []
    code = run_check_data(Config(task="segment", data=seg_cfg(tmp_path)), workers=0,
                          out=lines.append)
    text = "\n".join(lines)
    assert code == 1 and "broken.nii.gz" in text
    assert "items with each class in their mask: 0 3, 1 3, 2 3" in text


def test_a_layout_without_masks_is_named(tmp_path):
    (tmp_path / "train/images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"images/\*\.nii\.gz"):
        build_dataset(seg_cfg(tmp_path), "train", train=True)

"""ImageFolder-layout data set: decoding, class indices, bad files."""

import numpy as np
import pytest
import torch
from PIL import Image

from vitmae.config import DataConfig
from vitmae.data import build_dataset


@pytest.fixture
def image_root(tmp_path):
    rng = np.random.default_rng(0)
    for cls, n in (("cat", 3), ("dog", 2)):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(n):
            size = (20 + 5 * i, 24)
            Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(
                tmp_path / "train" / cls / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8), mode="L").save(
        tmp_path / "train" / "dog" / "gray.png")
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    return tmp_path


def corrupt(root):
    path = root / "train" / "cat" / "broken.png"
    path.write_bytes(b"\x89PNG not really")
    return path


@pytest.mark.parametrize("train", [True, False])
def test_folder_items_and_attributes(image_root, train):
    ds = build_dataset(DataConfig(dataset="folder", root=str(image_root), img_size=16),
                       "train", train)
    assert (len(ds), ds.classes, ds.num_classes, ds.in_chans) == (6, ["cat", "dog"], 2, 3)
    assert len(ds.mean) == len(ds.std) == 3
    items = [ds[i] for i in range(len(ds))]
    assert [t for _, t in items] == [0, 0, 0, 1, 1, 1]
    assert all(img.shape == (3, 16, 16) and img.dtype == torch.float32 for img, _ in items)


def test_corrupt_image_raises_with_its_name(image_root):
    corrupt(image_root)
    ds = build_dataset(DataConfig(dataset="folder", root=str(image_root)), "train", False)
    with pytest.raises(OSError, match="broken.png"):
        [ds[i] for i in range(len(ds))]


def test_skip_bad_skips_and_records(image_root):
    bad = corrupt(image_root)
    ds = build_dataset(DataConfig(dataset="folder", root=str(image_root), skip_bad=True),
                       "train", False)
    items = [ds[i] for i in range(len(ds))]
    assert len(items) == 7 and ds.bad_files == [str(bad)]


def test_missing_split_names_the_path(image_root):
    with pytest.raises(FileNotFoundError, match=str(image_root / "val")):
        build_dataset(DataConfig(dataset="folder", root=str(image_root)), "val", False)

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


def add_class(root, split, name, n=1):
    (root / split / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(root / split / name / f"{i}.png")


def test_an_empty_class_folder_stops_the_build_naming_it(image_root):
    (image_root / "train" / "zebra").mkdir()
    (image_root / "train" / "zebra" / "notes.txt").write_text("no image")
    with pytest.raises(ValueError, match=f"{image_root / 'train' / 'zebra'} has no images"):
        build_dataset(DataConfig(dataset="folder", root=str(image_root)), "train", True)


@pytest.mark.parametrize("only_in", ["train", "test"])
def test_a_class_folder_in_one_split_only_stops_the_build_naming_it(image_root, only_in):
    add_class(image_root, "test", "cat")
    add_class(image_root, "test", "dog")
    add_class(image_root, only_in, "emu")
    lacking = image_root / ("test" if only_in == "train" else "train")
    for split in ("train", "test"):  # whichever split is built first stops the run
        with pytest.raises(ValueError, match=f"{lacking} has no class folder emu"):
            build_dataset(DataConfig(dataset="folder", root=str(image_root)), split, True)


def test_allow_class_mismatch_trains_on_the_union_of_the_class_folders(image_root):
    add_class(image_root, "test", "dog", n=2)
    add_class(image_root, "test", "emu")
    (image_root / "train" / "fox").mkdir()
    cfg = DataConfig(dataset="folder", root=str(image_root), img_size=16,
                     allow_class_mismatch=True)
    train, test = build_dataset(cfg, "train", True), build_dataset(cfg, "test", False)
    assert train.classes == test.classes == ["cat", "dog", "emu", "fox"]
    assert [test[i][1] for i in range(len(test))] == [1, 1, 2]  # indices agree with train
    assert sorted({train[i][1] for i in range(len(train))}) == [0, 1]

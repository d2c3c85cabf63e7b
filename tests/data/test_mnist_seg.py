"""MNIST segmentation sets on a tiny fake MNIST: deterministic, and labels match pixels."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data.test_mnist import N_TEST, N_TRAIN, write_mnist
from vitmae.config import DataConfig, MnistSegConfig
from vitmae.data import build_dataset
from vitmae.data.mnist_seg import CLASSES, MnistSegmentation, scale_digit


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    return root, write_mnist(root)


def cfg(root, **kw) -> DataConfig:
    return DataConfig(**{"dataset": "mnist_seg", "root": str(root), "img_size": 32, **kw})


def test_composite_items_shapes_and_determinism(mnist_root):
    root, _ = mnist_root
    a, b = (build_dataset(cfg(root), "train", True) for _ in range(2))
    assert len(a) == N_TRAIN and len(build_dataset(cfg(root), "test", False)) == N_TEST
    assert (a.num_classes, a.in_chans, a.classes) == (11, 1, CLASSES)
    img, mask = a[3]
    assert img.shape == (1, 32, 32) and img.dtype == torch.float32
    assert mask.shape == (32, 32) and mask.dtype == torch.int64
    for i in range(len(a)):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])
    other = build_dataset(cfg(root, seed=1), "train", True)
    assert not all(torch.equal(a[i][1], other[i][1]) for i in range(len(a)))


@pytest.mark.parametrize("max_digits", [1, 3])
def test_composite_labels_match_pixels(mnist_root, max_digits):
    root, arrays = mnist_root
    options = MnistSegConfig(digits=max_digits, threshold=100)
    ds = build_dataset(cfg(root, mnist_seg=options), "test", False)
    labels = arrays["t10k"][1]
    for i in range(len(ds)):
        img, mask, owner = ds.draw(i)  # intensities 0-255, labels, layout row of each pixel
        assert torch.equal(mask > 0, img > 100)  # foreground exactly above the threshold
        placed = [r for r in ds.layout[i].tolist() if r[0] >= 0]
        assert torch.equal(owner >= 0, mask > 0)
        for j, (k, *_) in enumerate(placed):  # each digit's pixels carry that digit's label
            assert (mask[owner == j] == int(labels[k]) + 1).all()
        assert 1 <= len(placed) <= max_digits
        assert set(mask.unique().tolist()) <= {0} | {int(labels[k]) + 1 for k, *_ in placed}
        k, size, y, x = placed[-1]  # drawn last, on top: all its foreground keeps its label
        top = scale_digit(ds.digits[k], size) > 100
        assert (mask[y:y + size, x:x + size][top] == int(labels[k]) + 1).all()


def test_single_digit_is_mnist_thresholded(mnist_root):
    root, arrays = mnist_root
    ds = build_dataset(cfg(root, dataset="mnist_seg_single", img_size=28), "test", False)
    images, labels = arrays["t10k"]
    for i in range(len(ds)):
        img, mask = ds[i]
        digit = torch.from_numpy(images[i]).long()
        torch.testing.assert_close(img[0], (digit / 255 - 0.1307) / 0.3081)
        assert torch.equal(mask, torch.where(digit > 128, int(labels[i]) + 1, 0))


def test_bad_split_and_digit_count_raise(mnist_root):
    root, _ = mnist_root
    with pytest.raises(ValueError, match="unknown split 'val'"):
        build_dataset(cfg(root), "val", False)
    with pytest.raises(ValueError, match=r"data\.mnist_seg\.digits"):
        build_dataset(cfg(root, mnist_seg=MnistSegConfig(digits=0)), "train", True)


@pytest.fixture(scope="module")
def seg_digits():
    """benchmarks/seg_digits.py as a module (the benchmarks folder is not a package)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    return importlib.import_module("seg_digits")


def test_digit_reading_scores_each_digit_by_its_majority_label(seg_digits):
    owner = torch.full((8, 8), -1)
    owner[:4, :6], owner[5:, :] = 0, 1  # digit 0: 24 pixels, digit 1: 24 pixels
    owner[7, :3] = 2  # digit 2: 3 visible pixels, too few to judge
    pred = torch.zeros(8, 8, dtype=torch.int64)
    pred[:4, :6] = 4  # digit 0 (a 3, label 4) read right on 18 pixels ...
    pred[:1, :6] = 9  # ... and as an 8 on 6 of them
    pred[5:, :] = 2  # digit 1 (a 7, label 8) read as a 1 everywhere
    rows = [[0, 20, 0, 0], [1, 33, 5, 0], [2, 25, 7, 0]]  # (index, size, top, left)
    labels = torch.tensor([3, 7, 5])
    assert (seg_digits.digit_reading(pred, owner, rows, labels)
            == [(0, 20, True, 0.75), (1, 33, False, 1.0)])


def test_crowding_tells_alone_crowded_and_hidden_digits(seg_digits):
    digits = torch.zeros(2, 28, 28, dtype=torch.uint8)
    digits[:, 4:24, 4:24] = 255  # a 20 x 20 square of strokes in each
    layout = np.array([
        [[0, 28, 0, 0], [1, 28, 4, 4]],  # the second covers 16 x 16 of the first's 20 x 20
        [[0, 28, 0, 0], [1, 28, 4, 36]],  # side by side, boxes apart
        [[0, 28, 0, 0], [1, 28, 0, 24]],  # boxes overlap on blank margins only
    ])
    ds = MnistSegmentation(digits, torch.tensor([1, 2]), layout, canvas=64, threshold=128)
    kinds = [seg_digits.crowding(ds, i, ds.draw(i)[2]) for i in range(3)]
    assert kinds == [["hidden>=10%", "crowded"], ["alone", "alone"], ["alone", "alone"]]

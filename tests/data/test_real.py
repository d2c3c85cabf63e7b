"""The real MNIST and CIFAR-10 files under $VITMAE_DATA (skipped when absent)."""

import os
import warnings
from pathlib import Path

import pytest
import torch

from vitmae.config import DataConfig
from vitmae.data import build_dataset

pytestmark = pytest.mark.data


def real_root(sub: str) -> Path:
    root = os.environ.get("VITMAE_DATA")
    if not root:
        pytest.skip("VITMAE_DATA not set: point it at the folder holding MNIST/ and "
                    "cifar-10-batches-py/")
    if not (Path(root) / sub).is_dir():
        pytest.skip(f"{Path(root) / sub} not found")
    return Path(root)


def test_real_mnist_counts_and_histograms():
    cfg = DataConfig(dataset="mnist", root=str(real_root("MNIST")), img_size=28)
    train, test = build_dataset(cfg, "train", True), build_dataset(cfg, "test", False)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.label_counts().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                             5851, 5949]
    assert test.label_counts().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
                                            1009]
    assert int(test.images.sum()) == 264_923_200  # README: pixel sum of the test set
    assert test[0][0].shape == (1, 28, 28)


def test_real_cifar10_test_and_full_train():
    cfg = DataConfig(dataset="cifar10", root=str(real_root("cifar-10-batches-py")), img_size=32)
    test = build_dataset(cfg, "test", False)
    assert len(test) == 10_000
    assert test.label_counts().tolist() == [1000] * 10
    assert test.targets[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert test.classes[3] == "cat"
    assert test.images[0].flatten()[:3].tolist() == [158, 159, 165]  # README: published row 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all five batches: no partial-set warning
        train = build_dataset(cfg, "train", True)
    assert len(train) == 50_000
    assert train.label_counts().tolist() == [5000] * 10
    assert train.targets[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # README: batch 1
    img, _ = train[0]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32


def test_real_cifar10_partial_train_warns(tmp_path):
    """A copy with data_batch_4 and _5 removed loads the other three, naming the missing."""
    src = real_root("cifar-10-batches-py") / "cifar-10-batches-py"
    dst = tmp_path / "cifar-10-batches-py"
    dst.mkdir()
    for name in ("batches.meta", "data_batch_1", "data_batch_2", "data_batch_3"):
        (dst / name).symlink_to(src / name)
    cfg = DataConfig(dataset="cifar10", root=str(tmp_path), img_size=32)
    with pytest.warns(UserWarning, match="data_batch_4, data_batch_5"):
        train = build_dataset(cfg, "train", True)
    assert len(train) == 30_000
    assert train.label_counts().sum() == 30_000

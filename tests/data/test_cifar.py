"""CIFAR-10 pickle batches on a tiny fake folder written by the test."""

import pickle

import numpy as np
import pytest
import torch

from vitmae.config import DataConfig
from vitmae.data import build_dataset

N = 6  # images per fake batch
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(root, batches=("data_batch_1", "data_batch_2", "test_batch")) -> dict:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": NAMES}, protocol=2))
    rng = np.random.default_rng(0)
    out = {}
    for k, name in enumerate(batches):
        data = rng.integers(0, 256, (N, 3072), dtype=np.uint8)
        labels = [(k + i) % 10 for i in range(N)]
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": labels}, protocol=2))
        out[name] = (data, labels)
    return out


def test_missing_train_batches_warn_by_name(tmp_path):
    arrays = write_cifar(tmp_path)
    cfg = DataConfig(dataset="cifar10", root=str(tmp_path), img_size=32)
    with pytest.warns(UserWarning, match="data_batch_3, data_batch_4, data_batch_5") as rec:
        train = build_dataset(cfg, "train", True)
    assert "data_batch_1" not in str(rec[0].message)
    assert len(train) == 2 * N
    assert train.targets.tolist() == arrays["data_batch_1"][1] + arrays["data_batch_2"][1]
    img, target = train[N]
    assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and target == 1


def test_eval_pixels_classes_and_attributes(tmp_path):
    arrays = write_cifar(tmp_path)
    test = build_dataset(DataConfig(dataset="cifar10", root=str(tmp_path), img_size=32),
                         "test", False)
    assert (len(test), test.num_classes, test.in_chans, test.classes) == (N, 10, 3, NAMES)
    img, _ = test[2]
    pixels = img * torch.tensor(test.std)[:, None, None] + torch.tensor(test.mean)[:, None, None]
    expect = torch.from_numpy(arrays["test_batch"][0][2]).float().view(3, 32, 32) / 255
    torch.testing.assert_close(pixels, expect)
    resized = build_dataset(DataConfig(dataset="cifar10", root=str(tmp_path), img_size=16),
                            "test", True)
    assert resized[0][0].shape == (3, 16, 16)


def test_corrupt_batch_names_the_file(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="test_batch"):
        build_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)), "test", False)


def test_missing_folder_names_the_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py/test_batch"):
        build_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)), "test", False)

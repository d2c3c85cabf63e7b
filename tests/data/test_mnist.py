"""MNIST / Fashion-MNIST IDX loading on tiny files written by the test."""

import gzip
import struct

import numpy as np
import pytest
import torch

from vitmae.config import DataConfig
from vitmae.data import build_dataset
from vitmae.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx

N_TRAIN, N_TEST = 20, 10


def write_idx(path, array: np.ndarray, magic: int, gz: bool) -> None:
    raw = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw += array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def write_mnist(root, sub: str = "MNIST", gz: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / sub / "raw"
    folder.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, IMAGES_MAGIC, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, LABELS_MAGIC, gz)
        out[prefix] = (images, labels)
    return out


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_shapes_labels_and_pixels(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    cfg = DataConfig(dataset="mnist", root=str(tmp_path), img_size=28)
    train, test = build_dataset(cfg, "train", True), build_dataset(cfg, "test", False)
    assert (len(train), len(test)) == (N_TRAIN, N_TEST)
    assert (test.num_classes, test.in_chans, test.mean, test.std) == (10, 1, (0.1307,), (0.3081,))
    images, labels = arrays["t10k"]
    for i in range(N_TEST):
        img, target = test[i]
        assert img.shape == (1, 28, 28) and img.dtype == torch.float32
        assert target == labels[i]
        expect = (torch.from_numpy(images[i]).float() / 255 - 0.1307) / 0.3081
        torch.testing.assert_close(img[0], expect)
    assert train[0][0].shape == (1, 28, 28)


def test_mnist_resize_and_fashion_variant(tmp_path):
    write_mnist(tmp_path, sub="FashionMNIST", gz=True)
    cfg = DataConfig(dataset="fashion_mnist", root=str(tmp_path), img_size=16)
    ds = build_dataset(cfg, "train", True)
    assert ds[0][0].shape == (1, 16, 16)
    assert ds.classes[0] == "T-shirt/top" and ds.mean == (0.2860,)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_file_raises_naming_it(tmp_path, gz):
    write_mnist(tmp_path, gz=gz)
    path = tmp_path / "MNIST" / "raw" / ("t10k-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        build_dataset(DataConfig(dataset="mnist", root=str(tmp_path)), "test", False)


def test_wrong_magic_names_file_and_expectation(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.zeros((5, 28, 28)), IMAGES_MAGIC, gz=False)
    with pytest.raises(ValueError, match=r"labels: expected IDX magic number 2049, found 2051"):
        read_idx(path, LABELS_MAGIC)


def test_label_count_mismatch_raises(tmp_path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(3), LABELS_MAGIC, gz=False)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: expected 10 labels"):
        build_dataset(DataConfig(dataset="mnist", root=str(tmp_path)), "test", False)


def test_missing_folder_names_the_paths(tmp_path):
    cfg = DataConfig(dataset="mnist", root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(cfg, "train", True)
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in msg
    assert "VITMAE_DATA" in msg and "data.download=true" in msg

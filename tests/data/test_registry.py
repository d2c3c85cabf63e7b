"""Data registry, data root, subset and the sklearn digits data set (offline, seconds)."""

from pathlib import Path

import pytest
import torch

from vitmae.config import DataConfig
from vitmae.data import DATASETS, build_dataset, data_root, register_dataset

ATTRS = ("num_classes", "in_chans", "classes", "mean", "std")


def test_data_root_precedence(monkeypatch):
    monkeypatch.delenv("VITMAE_DATA", raising=False)
    assert data_root(DataConfig()) == Path("data")
    monkeypatch.setenv("VITMAE_DATA", "/env/data")
    assert data_root(DataConfig()) == Path("/env/data")
    assert data_root(DataConfig(root="/cfg/data")) == Path("/cfg/data")


def test_registry_dispatches_to_a_registered_builder():
    @register_dataset("test_only_dummy")
    def build(cfg, split, train):
        return ["item", split, train]

    try:
        ds = build_dataset(DataConfig(dataset="test_only_dummy"), "val", False)
        assert ds.dataset == ["item", "val", False]  # inside the data.skip_bad wrapper
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("test_only_dummy")(build)
    finally:
        del DATASETS["test_only_dummy"]


def test_unknown_dataset_and_split_name_the_choices():
    with pytest.raises(ValueError, match="digits"):
        build_dataset(DataConfig(dataset="nope"), "train", True)
    with pytest.raises(ValueError, match="valid: train, test"):
        build_dataset(DataConfig(dataset="digits"), "val", False)


@pytest.mark.parametrize("img_size", [8, 16])
def test_digits_split_shapes_and_attributes(img_size):
    cfg = DataConfig(dataset="digits", img_size=img_size)
    train, test = build_dataset(cfg, "train", True), build_dataset(cfg, "test", False)
    assert (len(train), len(test)) == (1347, 450)
    assert len(train) + len(test) == 1797
    for ds in (train, test):
        assert all(hasattr(ds, a) for a in ATTRS)
        assert (ds.num_classes, ds.in_chans, len(ds.mean), len(ds.std)) == (10, 1, 1, 1)
        img, target = ds[0]
        assert img.shape == (1, img_size, img_size) and img.dtype == torch.float32
        assert isinstance(target, int) and 0 <= target < 10
    # stratified: every class has about a quarter of its ~180 images in 'test'
    assert test.label_counts().min() >= 43 and test.label_counts().max() <= 46


def test_digits_split_is_deterministic_per_seed():
    def order(seed):
        return build_dataset(DataConfig(seed=seed), "test", False).targets

    assert torch.equal(order(0), order(0))
    assert not torch.equal(order(0), order(1))


def test_digits_augmentation_only_when_training():
    cfg = DataConfig(dataset="digits")
    train, test = build_dataset(cfg, "train", True), build_dataset(cfg, "train", False)
    torch.manual_seed(0)
    assert torch.equal(test[3][0], test[3][0])
    changed = [not torch.equal(train[i][0], test[i][0]) for i in range(20)]
    assert sum(changed) >= 15
    # eval: un-normalized pixels stay in [0, 1] (bilinear upsampling of 0..16 / 16)
    x = test[3][0] * test.std[0] + test.mean[0]
    assert x.min() >= -1e-5 and x.max() <= 1 + 1e-5


def test_subset_keeps_first_items_and_attributes_for_training_only():
    cfg = DataConfig(dataset="digits", subset=100)
    train, test = build_dataset(cfg, "train", False), build_dataset(cfg, "test", False)
    full = build_dataset(DataConfig(dataset="digits"), "train", False)
    assert len(train) == len(full)  # train=False: no subset
    sub = build_dataset(cfg, "train", True)
    assert len(sub) == 100 and len(test) == 450
    assert (sub.num_classes, sub.in_chans, sub.classes) == (10, 1, full.classes)
    assert [sub[i][1] for i in range(5)] == [full[i][1] for i in range(5)]

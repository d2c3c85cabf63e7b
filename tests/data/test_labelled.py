"""data.labels_fraction: the labelled subset is class-balanced with exact per-class sizes,
a function of (targets, fraction, data.seed) only, nested across fractions, and refused for
tasks without one class per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli.test_cli import run_cli

from vitmae.config import ConfigError, load_config
from vitmae.data import build_dataset
from vitmae.data.labelled import class_targets, labelled_indices

COUNTS = (100, 50, 7, 1)  # images per class
TARGETS = np.repeat(np.arange(len(COUNTS)), COUNTS)[np.random.default_rng(0).permutation(158)]


def _per_class(idx: np.ndarray) -> list[int]:
    return np.bincount(TARGETS[idx], minlength=len(COUNTS)).tolist()


@pytest.mark.parametrize("fraction,sizes", [
    (1.0, [100, 50, 7, 1]),
    (0.5, [50, 25, 4, 1]),  # 3.5 -> 4 (half to even), 0.5 -> 0 -> at least 1
    (0.1, [10, 5, 1, 1]),
    (0.01, [1, 1, 1, 1]),
])
def test_each_class_keeps_round_fraction_of_its_images_and_at_least_one(fraction, sizes):
    idx = labelled_indices(TARGETS, fraction, seed=0)
    assert _per_class(idx) == sizes
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)  # sorted, no repeats


def test_a_balanced_data_set_gives_a_balanced_subset():
    targets = np.tile(np.arange(10), 500)  # (5000,) 500 per class
    idx = labelled_indices(targets, 0.01, seed=3)
    assert np.bincount(targets[idx]).tolist() == [5] * 10


def test_the_subset_depends_on_the_seed_only():
    first = labelled_indices(TARGETS, 0.1, seed=1)
    torch.manual_seed(123), np.random.seed(123)  # the global RNGs play no part
    assert np.array_equal(labelled_indices(TARGETS, 0.1, seed=1), first)
    assert not np.array_equal(labelled_indices(TARGETS, 0.1, seed=2), first)


def test_smaller_fractions_are_nested_in_larger_ones():
    subsets = [set(labelled_indices(TARGETS, f, seed=0).tolist()) for f in (0.01, 0.1, 0.5, 1.0)]
    assert all(a <= b for a, b in zip(subsets, subsets[1:], strict=False))
    assert subsets[-1] == set(range(len(TARGETS)))


def test_build_dataset_takes_the_fraction_of_data_subset_for_fine_tuning_only():
    cfg = load_config("digits", ["data.subset=200", "data.labels_fraction=0.1"]).data
    full = class_targets(build_dataset(cfg, "train", train=True).dataset)  # (200,)
    ds = build_dataset(cfg, "train", train=True, labelled=True)
    labels = [int(ds[i][1]) for i in range(len(ds))]
    assert len(ds) == sum(max(1, round(0.1 * n)) for n in np.bincount(full))
    assert np.bincount(labels).tolist() == [max(1, round(0.1 * n)) for n in np.bincount(full)]
    assert len(build_dataset(cfg, "train", train=True)) == 200  # MAE pretraining: every image


@pytest.mark.parametrize("task", ["multilabel", "segment"])
def test_tasks_without_one_class_per_image_are_refused(task):
    with pytest.raises(ConfigError, match=r"^data.labels_fraction: .*task=classify"):
        load_config(None, [f"task={task}", "data.labels_fraction=0.1"])


@pytest.mark.parametrize("value", [0, -0.1, 1.5])
def test_fractions_outside_0_1_are_refused(value):
    with pytest.raises(ConfigError, match=r"^data.labels_fraction: must be in \(0, 1\]"):
        load_config(None, [f"data.labels_fraction={value}"])


def test_the_run_log_names_the_fraction_and_the_subset_size(tmp_path):
    out = run_cli(["finetune", "-c", "digits", "model.arch=vit_micro_patch4",
                   "data.labels_fraction=0.1", "data.batch_size=64", "finetune.optim.epochs=1",
                   f"run.output_dir={tmp_path}", "run.name=frac"])
    n = len(labelled_indices(class_targets(build_dataset(
        load_config("digits").data, "train", train=True).dataset), 0.1, seed=0))
    assert any(f"({n} images, data.labels_fraction=0.1)" in line for line in out)


@pytest.mark.parametrize("overrides", [["data.subset=64"], ["data.subset=64",
                                                            "data.labels_fraction=0.5"]])
def test_class_targets_are_the_items_own_labels_through_every_wrapper(overrides):
    # the training set is wrapped (data.subset, the labelled fraction, the bad-file skipper),
    # and each wrapper reads attributes such as `targets` through to the whole data set below
    ds = build_dataset(load_config("digits", overrides).data, "train", train=True)
    want = [int(ds[i][1]) for i in range(len(ds))]
    assert class_targets(ds).tolist() == want

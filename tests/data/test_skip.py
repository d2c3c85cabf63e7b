"""data.skip_bad, one mechanism for every data set: `build_dataset` wraps each in SkipBad,
which skips an item that raises a BadDataError (replaced by the next good one, the file
recorded) or re-raises it naming the file and the way to skip."""

import itertools

import pytest

from vitmae.config import DataConfig
from vitmae.data import DATASETS, build_dataset
from vitmae.data.checks import BadDataError, BadMaskError, MissingFileError


class Items:
    """Item i is i, except the `bad` ones, which raise naming the file 'f<i>'."""

    classes = ["a"]

    def __init__(self, n: int, bad: dict[int, type]):
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i in self.bad:
            raise self.bad[i](f"f{i}: bad", f"f{i}")
        return i


@pytest.fixture
def register():
    """register(items) -> a DataConfig whose data set is `items`."""
    names = []

    def add(items: Items, **cfg) -> DataConfig:
        name = f"test_only_items_{len(names)}"
        DATASETS[name] = lambda c, split, train: items
        names.append(name)
        return DataConfig(dataset=name, **cfg)

    yield add
    for name in names:
        del DATASETS[name]


def test_without_skip_bad_a_bad_item_raises_naming_its_file_and_the_fix(register):
    ds = build_dataset(register(Items(4, {2: BadMaskError})), "train", True)
    assert [ds[i] for i in (0, 1, 3)] == [0, 1, 3]
    with pytest.raises(BadMaskError, match=r"f2: bad; pass data\.skip_bad=true") as e:
        ds[2]
    assert e.value.path == "f2" and ds.take_skipped() == []


def test_skip_bad_replaces_a_bad_item_by_the_next_good_one_and_records_it(register):
    items = Items(5, {1: MissingFileError, 2: BadMaskError, 4: BadDataError})
    ds = build_dataset(register(items, skip_bad=True), "train", True)
    assert [ds[i] for i in range(5)] == [0, 3, 3, 3, 0]  # 4 wraps round to 0
    assert ds.bad_files == ["f1", "f2", "f4"]  # each once, in the order first met
    assert [p for p, _ in ds.take_skipped()] == ["f1", "f2", "f4"]
    assert ds.take_skipped() == []  # taken: the next epoch counts afresh
    assert ds.classes == ["a"]  # the data set's attributes read through


def test_skip_bad_with_no_good_item_left_says_so(register):
    ds = build_dataset(register(Items(2, {0: BadMaskError, 1: BadMaskError}), skip_bad=True),
                       "train", True)
    with pytest.raises(BadDataError, match="all 2 were skipped"):
        ds[0]


def test_skip_bad_applies_within_a_subset(register):
    ds = build_dataset(register(Items(6, {2: BadMaskError}), skip_bad=True, subset=3),
                       "train", True)
    assert len(ds) == 3 and [ds[i] for i in range(3)] == [0, 1, 0]


def test_other_errors_are_not_skipped(register):
    class Broken(Items):
        def __getitem__(self, i):
            raise RuntimeError("a bug, not bad data")

    ds = build_dataset(register(Broken(2, {}), skip_bad=True), "train", True)
    with pytest.raises(RuntimeError, match="a bug"):
        ds[0]


def test_a_wrapped_data_set_iterates_as_a_sequence(register):
    # `for item in ds` (the sequence protocol) stops at the end instead of wrapping round
    # for ever; a negative index counts from the end, past it is an IndexError.
    ds = build_dataset(register(Items(3, {}), skip_bad=True), "train", True)
    assert list(itertools.islice(iter(ds), 5)) == [0, 1, 2] and ds[-1] == 2
    with pytest.raises(IndexError, match="item 3 of a data set of 3"):
        ds[3]

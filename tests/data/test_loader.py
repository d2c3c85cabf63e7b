"""The data-order contract of `vitmae.data.loader`: order and augmentation are a pure function
of (seed, epoch, position) that changes every epoch, repeats on resume, and splits over DDP
ranks into disjoint shards (training) or each item exactly once (evaluation).

Ranks are simulated by setting `vitmae.distributed`'s rank and world size: no processes.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, get_worker_info

import vitmae.distributed
from vitmae.config import DataConfig
from vitmae.data import build_dataset
from vitmae.data.loader import EpochSampler, SeededSamples, make_loader
from vitmae.tasks import build_task
from vitmae.train.engine import evaluate, run_evaluator


class Draws(Dataset):
    """Item i is (a random draw from torch's default generator, i): the draw stands for a
    random augmentation, i for which item it is."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.rand(3), i  # (3,) "augmentation", index


@pytest.fixture
def as_rank(monkeypatch):
    """as_rank(rank, world): what `vitmae.distributed` reports from now on."""

    def set_rank(rank: int, world: int) -> None:
        monkeypatch.setattr(vitmae.distributed, "rank", lambda: rank)
        monkeypatch.setattr(vitmae.distributed, "world_size", lambda: world)

    return set_rank


def order(epoch: int, start_batch: int = 0, n: int = 40, seed: int = 3) -> list[int]:
    return EpochSampler(n, seed, epoch, shuffle=True, batch_size=4,
                        start_batch=start_batch).indices()


def loaded(loader) -> tuple[torch.Tensor, list[int]]:
    """Every batch of `loader` -> (the draws (N, 3), the item indices)."""
    draws, ids = zip(*[(x, i) for x, i in loader], strict=True)
    return torch.cat(draws), torch.cat(ids).tolist()


def test_each_epoch_is_a_new_permutation_of_every_item():
    epochs = [order(e) for e in range(4)]
    for o in epochs:
        assert sorted(o) == list(range(40))
    assert len({tuple(o) for o in epochs}) == 4  # no two epochs in the same order
    assert order(0, n=40, seed=4) != epochs[0]  # the seed matters too


def test_a_resumed_epoch_continues_the_same_order():
    for epoch in (0, 2):
        full = order(epoch)
        assert order(epoch) == full  # a fresh sampler (a resumed process) draws it again
        assert order(epoch, start_batch=3) == full[3 * 4:]  # after 3 batches of 4


def test_augmentation_changes_every_epoch_and_repeats_on_resume():
    ds = Draws(12)
    epoch = [torch.stack([SeededSamples(ds, 0, e)[i][0] for i in range(12)]) for e in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not torch.isclose(epoch[a], epoch[b]).all(1).any(), (a, b)  # item by item
    again = torch.stack([SeededSamples(ds, 0, 1)[i][0] for i in range(12)])
    assert torch.equal(again, epoch[1])
    assert not torch.isclose(epoch[0][0], epoch[0][1]).all()  # items differ within an epoch


def test_an_items_augmentation_does_not_depend_on_its_batch_or_the_global_rng():
    data = SeededSamples(Draws(12), 5, 2)
    alone = data[7][0]
    torch.manual_seed(123)  # whatever the training RNG holds
    in_batch = data.__getitems__([3, 7, 0])[1][0]
    other_batch = data.__getitems__([7, 11])[0][0]
    assert torch.equal(alone, in_batch) and torch.equal(alone, other_batch)
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(1)), "loading moved the training RNG"


def test_a_loader_resumed_mid_epoch_gives_the_rest_of_the_same_batches():
    ds = Draws(20)
    draws, ids = loaded(make_loader(ds, 4, train=True, seed=1, epoch=2))
    rest_draws, rest_ids = loaded(make_loader(ds, 4, train=True, seed=1, epoch=2, start_batch=2))
    assert rest_ids == ids[8:] and torch.equal(rest_draws, draws[8:])
    next_draws, next_ids = loaded(make_loader(ds, 4, train=True, seed=1, epoch=3))
    assert next_ids != ids
    by_item = dict(zip(ids, draws, strict=True))
    assert not any(torch.isclose(by_item[i], d).all() for i, d in zip(next_ids, next_draws,
                                                                      strict=True))


def test_the_real_training_transforms_follow_the_seed_and_the_epoch():
    """The built-in digits' training augmentation (a random affine, torchvision v2) draws
    from the generator that SeededSamples reseeds: same epoch, same images; next epoch,
    other images."""
    ds = build_dataset(DataConfig(dataset="digits", subset=16), "train", train=True)

    def images(epoch: int) -> torch.Tensor:  # (16, 1, H, W) in item order
        data = SeededSamples(ds, 0, epoch)
        return torch.stack([data[i][0] for i in range(16)])

    first = images(1)
    assert torch.equal(images(1), first)
    changed = (images(2) != first).flatten(1).any(1)  # (16,) per item
    assert changed.all()


def test_a_worker_process_loads_the_same_items_as_the_main_process():
    ds = Draws(16)
    main = loaded(make_loader(ds, 4, train=True, seed=2, epoch=1))
    worker = loaded(make_loader(ds, 4, train=True, seed=2, epoch=1, num_workers=1))
    assert worker[1] == main[1] and torch.equal(worker[0], main[0])


class WhereLoaded(Dataset):
    """Item i is (whether a worker process loaded it, i)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        return get_worker_info() is not None, i


@pytest.mark.parametrize("train", [True, False])
def test_a_loader_reads_in_this_process_unless_given_workers(train):
    """num_workers=0, the default (data.num_workers's too), loads in the calling process, with
    no process to start; num_workers=1 loads in a worker process."""
    in_worker, _ = zip(*make_loader(WhereLoaded(), 4, train=train), strict=True)
    assert not torch.cat(in_worker).any()
    in_worker, _ = zip(*make_loader(WhereLoaded(), 4, train=train, num_workers=1), strict=True)
    assert torch.cat(in_worker).all()


class WhereEvaluated:
    """A task whose evaluator keeps, per item, whether a worker process loaded it."""

    def evaluator(self):
        return self

    sums: dict = {}

    def __init__(self):
        self.in_worker: list[bool] = []

    def update(self, model, batch) -> None:
        self.in_worker += batch[0].tolist()

    def result(self) -> dict:
        return {"in_worker": self.in_worker}


def test_evaluation_reads_in_this_process_unless_given_workers():
    cpu = torch.device("cpu")
    assert evaluate(torch.nn.Identity(), WhereEvaluated(), WhereLoaded(), 4, cpu)[
        "in_worker"] == [False] * 8
    assert evaluate(torch.nn.Identity(), WhereEvaluated(), WhereLoaded(), 4, cpu,
                    num_workers=1)["in_worker"] == [True] * 8
    ev = run_evaluator(torch.nn.Identity(), WhereEvaluated(), WhereLoaded(), 4, cpu)
    assert ev.in_worker == [False] * 8


def test_evaluation_batches_reach_the_model_on_its_device():
    class OnDevice(WhereEvaluated):
        def update(self, model, batch) -> None:
            self.in_worker.append(batch[0].device)

    meta = torch.device("meta")  # a device of its own on any machine
    ev = run_evaluator(torch.nn.Identity(), OnDevice(), WhereLoaded(), 4, meta)
    assert ev.in_worker == [meta, meta]


@pytest.mark.parametrize(("n", "world", "batch"), [(48, 3, 4), (40, 2, 5)])
def test_training_shards_are_disjoint_and_cover_the_epoch(n, world, batch, as_rank):
    shards = []
    for rank in range(world):
        as_rank(rank, world)
        shards.append(EpochSampler(n, 0, 1, shuffle=True, batch_size=batch).indices())
    assert {len(s) for s in shards} == {n // world}  # every rank takes the same steps
    flat = [i for s in shards for i in s]
    assert sorted(flat) == list(range(n))  # disjoint, and together every item once
    as_rank(0, 1)
    assert [s[j] for j in range(n // world) for s in shards] == order(1, n=n, seed=0)


def test_uneven_training_shards_pad_with_repeats_only(as_rank):
    # 10 items on 3 ranks: 4 each, the 2 padded ones repeat the epoch's first items
    shards = []
    for rank in range(3):
        as_rank(rank, 3)
        shards.append(EpochSampler(10, 0, 0, shuffle=True, batch_size=1).indices())
    flat = [i for s in shards for i in s]
    assert [len(s) for s in shards] == [4, 4, 4] and set(flat) == set(range(10))
    repeated = sorted(i for i in set(flat) if flat.count(i) == 2)
    as_rank(0, 1)
    assert len(flat) == 12 and repeated == sorted(order(0, n=10, seed=0)[:2])


def test_making_and_reading_a_loader_leaves_the_training_rng_alone():
    """A loader made at an epoch start or on resume must not draw from the global RNG (the
    DataLoader draws its workers' base seed from its `generator`, else from that RNG)."""
    torch.manual_seed(7)
    want = torch.rand(4)
    torch.manual_seed(7)
    for epoch in (0, 1):
        loaded(make_loader(Draws(12), 4, train=True, seed=1, epoch=epoch))
    assert torch.equal(torch.rand(4), want)


def test_every_rank_takes_the_same_number_of_training_batches(as_rank):
    """DDP ranks step in lockstep: with 10 items on 3 ranks each rank's loader gives the same
    batches, the short rank padded (a rank with one batch fewer would hang the others)."""
    counts = []
    for rank in range(3):
        as_rank(rank, 3)
        counts.append(len(list(make_loader(Draws(10), 2, train=True))))
    assert counts == [2, 2, 2]


@pytest.mark.parametrize(("n", "world"), [(13, 2), (10, 3), (2, 3)])
def test_evaluation_sees_each_item_exactly_once_across_ranks(n, world, as_rank):
    seen = []
    for rank in range(world):
        as_rank(rank, world)
        seen += [i for _, batch in make_loader(Draws(n), 4, train=False) for i in batch.tolist()]
    assert sorted(seen) == list(range(n))


def test_the_evaluators_sums_add_up_to_the_whole_set_across_ranks(as_rank):
    labels = torch.arange(11) % 3  # (N,)

    class Labelled(Dataset):
        def __len__(self) -> int:
            return 11

        def __getitem__(self, i: int):
            return labels[i].float().reshape(1), int(labels[i])  # (1,) the label as input

    class Oracle(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1) -> (B, 3), always right
            return torch.nn.functional.one_hot(x[:, 0].long(), 3).float()

    cms = []
    for rank in range(3):
        as_rank(rank, 3)
        ev = run_evaluator(Oracle(), build_task("classify", num_classes=3), Labelled(), 2,
                           torch.device("cpu"))
        cms.append(ev.sums["cm"])  # (3, 3) this rank's share
    total = sum(cms)
    assert total.sum() == 11 and total.trace() == 11
    assert total.diag().tolist() == torch.bincount(labels, minlength=3).tolist()


@pytest.mark.parametrize("seed, epoch", [(0, 0), (3, 2), (7, 11)])
def test_the_order_and_the_item_seeds_follow_the_documented_formulas(seed, epoch):
    # The formulas are the reproducibility contract of every recorded figure and of resuming
    # across versions (the module docstring): another formula with the same properties would
    # still change every published run, so the formulas themselves are pinned here.
    n = 37
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    got = EpochSampler(n, seed, epoch, shuffle=True, batch_size=1).indices()
    assert got == perm.tolist()
    items = SeededSamples(Draws(n), seed, epoch)
    for i in (0, 5, 36):
        g = torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 10_000_019 + i)
        torch.testing.assert_close(items[i][0], torch.rand(3, generator=g), rtol=0, atol=0)


def test_a_loader_without_seed_and_epoch_is_epoch_0_of_seed_0():
    ds = Draws(12)
    default = loaded(make_loader(ds, 4, train=True))
    explicit = loaded(make_loader(ds, 4, train=True, seed=0, epoch=0))
    assert default[1] == explicit[1] and torch.equal(default[0], explicit[0])

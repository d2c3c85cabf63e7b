"""DataLoaders whose order and augmentation are a pure function of (seed, epoch, position).

That makes a run resumable mid-epoch, bit for bit, with any number of workers: the sampler
draws the epoch's permutation, shards it over DDP ranks (as `DistributedSampler`), and skips
the batches already done; every sample is augmented under its own seed, so which worker
loads it does not matter. The formulas are part of the contract (every recorded figure is
reproduced from its command and seed by them):
    epoch e's order: torch.randperm(n, generator=Generator().manual_seed(seed * 100_003 + e))
    item i in epoch e: torch's default generator seeded with
        (seed * 1_000_003 + e) * 10_000_019 + i before the item is read and augmented.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from vitmae import distributed as dist


class EpochSampler(Sampler[int]):
    """This rank's indices of a seeded per-epoch permutation, from batch `start_batch` on."""

    def __init__(self, n: int, seed: int, epoch: int, shuffle: bool, batch_size: int,
                 start_batch: int = 0, drop_last: bool = True):
        self.n, self.seed, self.epoch, self.shuffle = n, seed, epoch, shuffle
        self.batch_size, self.start_batch, self.drop_last = batch_size, start_batch, drop_last
        self.rank, self.world = dist.rank(), dist.world_size()

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.world > 1:
            if self.drop_last:  # training: pad so every rank takes the same number of steps
                per_rank = -(-self.n // self.world)
                order += order[: per_rank * self.world - self.n]
            order = order[self.rank::self.world]  # evaluation: each sample on one rank, once
        if self.drop_last:
            order = order[: len(order) // self.batch_size * self.batch_size]
        return order[self.start_batch * self.batch_size:]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return len(self.indices())


class SeededSamples(Dataset):
    """Wraps a data set so that item i of epoch e is augmented under the seed (seed, e, i)."""

    def __init__(self, dataset: Dataset, seed: int, epoch: int):
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list:
        """A batch of items; the DataLoader calls this once per batch when it exists."""
        # Only the CPU generator is reseeded: torch.manual_seed would also queue CUDA seeds
        # and costs ~100x more per call.
        gen = torch.default_generator
        saved = gen.get_state() if get_worker_info() is None else None  # main process: keep
        items = []
        for i in indices:
            gen.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + i)
            items.append(self.dataset[i])
        if saved is not None:
            gen.set_state(saved)
        return items


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, seed: int = 0,
                epoch: int = 0, start_batch: int = 0, num_workers: int = 0,
                pin_memory: bool = False) -> DataLoader:
    """A loader for one epoch. Training: shuffled, seeded, last partial batch dropped;
    evaluation: in order, each sample seen once across all ranks."""
    sampler = EpochSampler(len(dataset), seed, epoch, shuffle=train, batch_size=batch_size,
                           start_batch=start_batch, drop_last=train)
    data = SeededSamples(dataset, seed, epoch) if train else dataset
    # The loader draws its workers' base seed from `generator`, not from the global RNG,
    # so creating a loader (at an epoch start or on resume) leaves the training RNG alone.
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, drop_last=train, generator=generator)


def batches_per_epoch(dataset: Dataset, batch_size: int) -> int:
    """Training batches this rank sees per epoch (last partial batch dropped)."""
    per_rank = -(-len(dataset) // dist.world_size())
    return per_rank // batch_size

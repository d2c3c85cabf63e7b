"""Sharded steps on CPU threads (`run.shards`): the same gradients as one full-batch step,
deterministic with random draws inside the step, and the same training run through `fit`."""

from __future__ import annotations

import contextlib

import pytest
import torch

from train.test_engine import _train
from vitmae.tasks import build_task
from vitmae.train.shards import ShardedStep, split_batch


def _batch(n: int = 10, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 1, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)]


def _sharded_grads(model, task, batch, n: int, scale: float = 1.0) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    step = ShardedStep(n)
    try:
        step.step(task, model, batch, scale, contextlib.nullcontext)
    finally:
        step.close()
    return [p.grad.clone() for p in model.parameters()]


def test_split_batch_keeps_every_sample_in_order():
    x, y = torch.arange(10).view(10, 1), torch.arange(10)
    shards = split_batch([x, y], 3)
    assert [len(s[0]) for s in shards] == [4, 3, 3]
    assert torch.equal(torch.cat([s[0] for s in shards]), x)
    assert all(torch.equal(s[0][:, 0], s[1]) for s in shards)  # images stay with their labels


@pytest.mark.parametrize("n", [2, 3])
def test_sharded_gradients_equal_the_full_batch_gradient(micro_vit, n):
    model, task, batch = micro_vit(), build_task("classify", num_classes=10), _batch()
    loss, _ = task.train_step(model, batch)
    (loss * 0.5).backward()
    full = [p.grad.clone() for p in model.parameters()]
    sharded = _sharded_grads(model, task, batch, n, scale=0.5)  # shards of 4/3/3: weighted
    for (name, _), g, s in zip(model.named_parameters(), full, sharded, strict=True):
        torch.testing.assert_close(s, g, atol=1e-6, rtol=1e-4, msg=name)


def test_loss_and_metrics_are_the_sample_weighted_means(micro_vit):
    model, task, batch = micro_vit(), build_task("classify", num_classes=10), _batch()
    loss, metrics = task.train_step(model, batch)
    step = ShardedStep(3)
    value, sharded = step.step(task, model, batch, 1.0, contextlib.nullcontext)
    step.close()
    assert value == pytest.approx(loss.item(), rel=1e-5)
    assert sharded.keys() == metrics.keys()
    assert sharded["acc"] == pytest.approx(metrics["acc"], abs=1e-6)


def test_gradients_add_to_those_already_there(micro_vit):
    model, task, batch = micro_vit(), build_task("classify", num_classes=10), _batch()
    once = _sharded_grads(model, task, batch, 2)
    model.zero_grad(set_to_none=True)
    step = ShardedStep(2)
    for _ in range(2):  # two accumulation steps, no zero_grad between them
        step.step(task, model, batch, 1.0, contextlib.nullcontext)
    step.close()
    for p, g in zip(model.parameters(), once, strict=True):
        torch.testing.assert_close(p.grad, 2 * g)


def test_random_draws_repeat_for_a_seed_and_differ_across_seeds(micro_mae):
    # MAE masking and drop-path draw from each shard's generator, seeded from torch's default
    model, task = micro_mae(), build_task("pretrain")
    model.encoder.blocks[0].drop_path.p = 0.5
    batch = _batch(8)

    def grads(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return _sharded_grads(model, task, batch, 2)

    a, b, c = grads(0), grads(0), grads(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, z) for x, z in zip(a, c, strict=True))


def test_each_shard_step_gets_its_own_generator(micro_vit):
    seen = []

    class Recording:
        def train_step(self, model, batch, generator=None):
            seen.append(generator)
            return model(batch[0], generator=generator).square().mean(), {}

    step = ShardedStep(2)
    step.step(Recording(), micro_vit(), _batch(4), 1.0, contextlib.nullcontext)
    step.close()
    assert len(seen) == 2 and all(isinstance(g, torch.Generator) for g in seen)
    assert seen[0] is not seen[1]


def test_fit_with_two_shards_trains_as_one_process(micro_vit, tmp_path):
    threads = torch.get_num_threads()
    one, m1 = _train(micro_vit, tmp_path / "one", batch_size=8, accum=2, n=48, val=None)
    two, m2 = _train(micro_vit, tmp_path / "two", batch_size=8, accum=2, n=48, val=None, shards=2)
    assert torch.get_num_threads() == threads  # the workers' 1 is theirs alone
    start = micro_vit(num_classes=4)
    assert not torch.equal(one.head.weight, start.head.weight)
    for (name, p), q in zip(one.named_parameters(), two.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=2e-6, rtol=1e-4, msg=name)


def test_fewer_images_than_shards_is_refused(micro_vit):
    step = ShardedStep(4)
    with pytest.raises(ValueError, match=r"run\.shards=4"):
        step.step(build_task("classify", num_classes=10), micro_vit(), _batch(3), 1.0,
                  contextlib.nullcontext)
    step.close()

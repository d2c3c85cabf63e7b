"""Tasks: what one training step and one evaluation mean for each kind of run.

The engine knows nothing of MAE, classes or masks; a task gives it
  `train_step(model, batch) -> (loss, {name: float})` and
  `evaluator()` -> an object with `update(model, batch)`, additive tensor state `sums`
  (summed across ranks by the engine) and `result() -> dict`.
"""

from __future__ import annotations

from collections.abc import Callable

TASKS: dict[str, Callable] = {}


def register_task(name: str):
    def deco(cls):
        TASKS[name] = cls
        return cls
    return deco


def build_task(name: str, **kwargs):
    # Import the task modules so that they register themselves.
    from vitmae.tasks import classify, multilabel, pretrain, segment  # noqa: F401

    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    return TASKS[name](**kwargs)

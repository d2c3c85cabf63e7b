"""Tasks: what one training step and one evaluation mean for each kind of run.

The engine knows nothing of MAE, classes or masks; a task gives it
  `train_step(model, batch, generator) -> (loss, {name: float})`, where `generator` (a
  `torch.Generator`, or None for torch's default) is what the model's random draws (MAE
  masking, drop-path) come from, and
  `evaluator()` -> an object with `update(model, batch)`, additive tensor state `sums`
  (summed across ranks by the engine) and `result() -> dict`.
"""

from __future__ import annotations

from vitmae.errors import ConfigError
from vitmae.tasks import classify, multilabel, pretrain, segment  # noqa: F401  (they register)
from vitmae.tasks.registry import TASKS, register_task

__all__ = ["TASKS", "build_task", "register_task"]


def build_task(name: str, **kwargs):
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    return TASKS[name](**kwargs)

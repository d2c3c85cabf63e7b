"""A further split evaluated after every fine-tuning epoch (`finetune.test_split`).

The engine validates on data.val_split and picks no best epoch; protocols that select the
epoch by validation and report test at that epoch (MedMNIST: best validation AUC) need both
splits' metrics per epoch. `SplitMonitor` gives the test split's as `<split>_<metric>` in the
epoch's `monitor` record of metrics.jsonl, beside the `val` record. The engine calls monitors
on rank 0 only, so it reads the whole split in one process.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from vitmae.config import Config
from vitmae.data import build_dataset


class SplitMonitor:
    """monitor(model, epoch) -> {f"{split}_{metric}": value} of `task` on `dataset`."""

    def __init__(self, task, dataset, split: str, batch_size: int, device: torch.device):
        self.task, self.dataset, self.split = task, dataset, split
        self.batch_size, self.device = batch_size, device

    @torch.no_grad()
    def __call__(self, model: nn.Module, epoch: int) -> dict:
        if epoch == 0:  # before the first step: the head is untrained, nothing to select
            return {}
        ev = self.task.evaluator()
        for imgs, targets in DataLoader(self.dataset, self.batch_size):
            ev.update(model, (imgs.to(self.device), torch.as_tensor(targets).to(self.device)))
        return {f"{self.split}_{k}": v for k, v in ev.result().items()
                if isinstance(v, int | float)}


def finetune_monitors(cfg: Config, task, device: torch.device) -> list[SplitMonitor]:
    """[the monitor of finetune.test_split], or [] when it is not set."""
    split = cfg.finetune.test_split
    if split is None:
        return []
    dataset = build_dataset(cfg.data, split, train=False)
    return [SplitMonitor(task, dataset, split, cfg.data.batch_size, device)]

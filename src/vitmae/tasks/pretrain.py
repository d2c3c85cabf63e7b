"""MAE pretraining as a task: the model returns its own loss (as in facebookresearch/mae)."""

from __future__ import annotations

import torch

from vitmae.tasks.registry import register_task


@register_task("pretrain")
class PretrainTask:
    def __init__(self, eval_seed: int = 0, **_):
        self.eval_seed = eval_seed

    def train_step(self, model, batch, generator: torch.Generator | None = None):
        imgs = batch[0]  # (B, C, H, W); labels, if any, are not used
        loss, _, _ = model(imgs, generator=generator)
        return loss, {}

    def evaluator(self):
        return PretrainEvaluator(self.eval_seed)


class PretrainEvaluator:
    """Mean masked-patch loss on held-out images under a fixed masking seed."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)
        self.sums = {"loss": torch.zeros((), dtype=torch.float64), "n": torch.zeros((),
                     dtype=torch.float64)}

    def update(self, model, batch) -> None:
        imgs = batch[0]
        loss, _, _ = model(imgs, generator=self.generator)
        self.sums["loss"] += loss.item() * imgs.shape[0]
        self.sums["n"] += imgs.shape[0]

    def result(self) -> dict:
        return {"val_loss": (self.sums["loss"] / self.sums["n"].clamp(min=1)).item(),
                "n": int(self.sums["n"].item())}

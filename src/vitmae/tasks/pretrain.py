"""MAE pretraining as a task: the model returns its own loss (as in facebookresearch/mae)."""

from __future__ import annotations

import torch

from vitmae.tasks.registry import register_task


@register_task("pretrain")
class PretrainTask:
    """`teacher`: a frozen encoder whose features of the whole image the MAE distils into its
    visible tokens (`MaskedAutoencoder.distill_loss`); None: the MAE loss alone."""

    def __init__(self, eval_seed: int = 0, teacher: torch.nn.Module | None = None, **_):
        self.eval_seed, self.teacher = eval_seed, teacher

    def train_step(self, model, batch, generator: torch.Generator | None = None):
        imgs = batch[0]  # (B, C, H, W); labels, if any, are not used
        if self.teacher is None:
            loss, _, _ = model(imgs, generator=generator)
            return loss, {}
        with torch.no_grad():
            tokens = self.teacher.forward_features(imgs)  # (B, 1+L, D)
        loss, _, _ = model(imgs, generator=generator, teacher_tokens=tokens)
        parts = getattr(model, "module", model).parts  # DDP wraps the MAE in .module
        return loss, {k: v.item() for k, v in parts.items()}

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

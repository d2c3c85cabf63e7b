"""Image classification: cross-entropy with label smoothing; top-1 from a confusion matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitmae.tasks.metrics import classification_metrics, confusion_matrix
from vitmae.tasks.registry import register_task


@register_task("classify")
class ClassifyTask:
    def __init__(self, num_classes: int, classes: list[str] | None = None,
                 label_smoothing: float = 0.0, **_):
        self.K, self.classes, self.label_smoothing = num_classes, classes, label_smoothing

    def train_step(self, model, batch, generator: torch.Generator | None = None):
        imgs, labels = batch  # (B, C, H, W), (B,)
        logits = model(imgs, generator=generator)  # (B, K)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        acc = (logits.argmax(-1) == labels).float().mean().item()
        return loss, {"acc": acc}

    def evaluator(self):
        return ClassifyEvaluator(self.K, self.classes)


class ClassifyEvaluator:
    def __init__(self, K: int, classes: list[str] | None):
        self.K, self.classes = K, classes
        self.sums = {"cm": torch.zeros(K, K, dtype=torch.int64)}

    def update(self, model, batch) -> None:
        imgs, labels = batch
        pred = model(imgs).argmax(-1)  # (B,)
        self.sums["cm"] += confusion_matrix(pred.cpu(), labels.cpu(), self.K)

    def result(self) -> dict:
        return classification_metrics(self.sums["cm"], self.classes)

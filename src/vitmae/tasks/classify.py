"""Image classification: cross-entropy with label smoothing; top-1 from a confusion matrix;
with two classes also AUC, ACC at 0.5 and the all-negative baseline (`vitmae.tasks.binary`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitmae.tasks.binary import add_binary, binary_metrics, binary_sums
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
        if K == 2:
            self.sums.update(binary_sums())

    def update(self, model, batch) -> None:
        imgs, labels = batch
        logits = model(imgs)  # (B, K)
        self.sums["cm"] += confusion_matrix(logits.argmax(-1).cpu(), labels.cpu(), self.K)
        if self.K == 2:
            add_binary(self.sums, logits, labels)

    def result(self) -> dict:
        metrics = classification_metrics(self.sums["cm"], self.classes)
        return {**metrics, **binary_metrics(self.sums)} if self.K == 2 else metrics

"""Image classification: cross-entropy with label smoothing and optional class weights; top-1
from a confusion matrix; with two classes also AUC, ACC at 0.5 and the all-negative baseline
(`vitmae.tasks.binary`)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vitmae.tasks.binary import add_binary, binary_metrics, binary_sums
from vitmae.tasks.metrics import classification_metrics, confusion_matrix
from vitmae.tasks.registry import register_task


@register_task("classify")
class ClassifyTask:
    def __init__(self, num_classes: int, classes: list[str] | None = None,
                 label_smoothing: float = 0.0, class_weights: torch.Tensor | None = None, **_):
        self.K, self.classes, self.label_smoothing = num_classes, classes, label_smoothing
        self.class_weights = class_weights  # (K,) or None: the loss's weight of each class

    def train_step(self, model, batch, generator: torch.Generator | None = None):
        imgs, labels = batch  # (B, C, H, W), (B,)
        logits = model(imgs, generator=generator)  # (B, K)
        w = None if self.class_weights is None else self.class_weights.to(logits.device)
        loss = F.cross_entropy(logits, labels, weight=w, label_smoothing=self.label_smoothing)
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


def balanced_weights(targets: np.ndarray, K: int) -> torch.Tensor:
    """targets (N,) class ids -> (K,) float32 weights N / (k n_c), k the number of classes
    present (scikit-learn's "balanced"): each present class then weighs N / k in all; a class
    without items gets 0 (nothing of it to weigh)."""
    counts = np.bincount(np.asarray(targets), minlength=K).astype(np.float64)  # (K,)
    present = int((counts > 0).sum())
    w = np.divide(len(targets), present * counts, out=np.zeros(K), where=counts > 0)
    return torch.from_numpy(w).float()

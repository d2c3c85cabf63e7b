"""Multi-label classification (PASCAL VOC's 20 classes): binary cross-entropy per label.

The headline metric is mAP, the macro mean over classes of average precision; classes with
no positive image in the evaluation set have no AP and are left out of the mean (the result
says how many classes were averaged). To keep the state additive across DDP ranks, AP is
computed from per-class histograms of sigmoid scores (`vitmae.tasks.metrics.score_histograms`):
with 10,000 bins it agrees with scikit-learn's `average_precision_score` to ~1e-4.
Beside it: per-label accuracy and exact-match accuracy at a 0.5 threshold, and the
per-label accuracy of the all-negative predictor (the bar any model must clear).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitmae.tasks.metrics import average_precision, score_histograms
from vitmae.tasks.registry import register_task

BINS = 10_000


@register_task("multilabel")
class MultilabelTask:
    def __init__(self, num_classes: int, classes: list[str] | None = None, **_):
        self.K, self.classes = num_classes, classes

    def train_step(self, model, batch, generator: torch.Generator | None = None):
        imgs, targets = batch  # (B, C, H, W), (B, K) 0/1
        logits = model(imgs, generator=generator)  # (B, K)
        loss = F.binary_cross_entropy_with_logits(logits, targets.float())
        acc = ((logits > 0) == targets.bool()).float().mean().item()
        return loss, {"per_label_acc": acc}

    def evaluator(self):
        return MultilabelEvaluator(self.K, self.classes)


class MultilabelEvaluator:
    def __init__(self, K: int, classes: list[str] | None):
        self.K, self.classes = K, classes or [str(k) for k in range(K)]
        z = torch.zeros
        self.sums = {"pos_hist": z(K, BINS, dtype=torch.int64),
                     "neg_hist": z(K, BINS, dtype=torch.int64),
                     "correct": z(K, dtype=torch.int64),  # per label, at threshold 0.5
                     "exact": z((), dtype=torch.int64),
                     "n": z((), dtype=torch.int64)}

    def update(self, model, batch) -> None:
        imgs, targets = batch
        scores = torch.sigmoid(model(imgs).float()).cpu()  # (B, K)
        truth = targets.cpu().bool()  # (B, K)
        pos, neg = score_histograms(scores, truth, BINS)
        self.sums["pos_hist"] += pos
        self.sums["neg_hist"] += neg
        right = (scores > 0.5) == truth  # (B, K)
        self.sums["correct"] += right.sum(0)
        self.sums["exact"] += right.all(1).sum()
        self.sums["n"] += imgs.shape[0]

    def result(self) -> dict:
        s = self.sums
        n = int(s["n"])
        ap = average_precision(s["pos_hist"], s["neg_hist"])  # (K,), NaN without positives
        n_labels = max(n * self.K, 1)
        return {"map": ap.nanmean().item(),
                "map_classes": int((~ap.isnan()).sum()),
                "per_class_ap": dict(zip(self.classes, ap.tolist(), strict=True)),
                "per_label_acc": s["correct"].sum().item() / n_labels,
                "exact_match": s["exact"].item() / max(n, 1),
                "baseline_per_label_acc": s["neg_hist"].sum().item() / n_labels,
                "n": n}

"""Metrics computed from sums that can be added across DDP ranks (confusion matrices, score
histograms).

Every evaluator keeps only additive state, so `all_reduce(SUM)` of that state gives the exact
metric over the whole test set, whatever the number of processes.
"""

from __future__ import annotations

import torch


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, K: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """pred, target: (N,) or any equal shapes of class ids -> (K, K) int64, rows = truth."""
    pred, target = pred.reshape(-1), target.reshape(-1)
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    if target.numel() and (target.min() < 0 or target.max() >= K):
        raise ValueError(f"labels outside 0..{K - 1} (got {target.min()}..{target.max()})")
    idx = target.long() * K + pred.long()  # (N,)
    return torch.bincount(idx, minlength=K * K).reshape(K, K)  # (K, K)


def classification_metrics(cm: torch.Tensor, classes: list[str] | None = None) -> dict:
    """top1 (fraction), per-class accuracy (recall) and n from a (K, K) confusion matrix."""
    cm = cm.double()
    n = cm.sum()
    per_class = (cm.diag() / cm.sum(1).clamp(min=1)).tolist()
    names = classes or [str(i) for i in range(cm.shape[0])]
    return {"top1": (cm.diag().sum() / n.clamp(min=1)).item(),
            "per_class": dict(zip(names, per_class, strict=True)),
            "n": int(n.item())}


def segmentation_metrics(cm: torch.Tensor, classes: list[str] | None = None) -> dict:
    """mIoU, per-class IoU, mean and per-class Dice (2 TP / (truth + prediction), the F1 of
    each class's pixels, the medical standard), pixel and mean class accuracy from a (K, K)
    pixel confusion matrix.

    Void pixels are already left out of `cm` (`confusion_matrix(..., ignore_index=255)`).
    Classes absent from both truth and prediction (IoU 0/0) are left out of the means, as in
    mmsegmentation; their per-class IoU and Dice are reported as NaN.
    """
    cm = cm.double()
    tp = cm.diag()
    truth, pred = cm.sum(1), cm.sum(0)  # (K,) pixels per true class, per predicted class
    union = truth + pred - tp
    iou = tp / union  # NaN where the class never occurs
    dice = 2 * tp / (truth + pred)
    acc = tp / truth
    names = classes or [str(i) for i in range(cm.shape[0])]
    return {"miou": iou.nanmean().item(),
            "pixel_acc": (tp.sum() / cm.sum().clamp(min=1)).item(),
            "mean_class_acc": acc.nanmean().item(),
            "per_class_iou": dict(zip(names, iou.tolist(), strict=True)),
            "mdice": dice.nanmean().item(),
            "per_class_dice": dict(zip(names, dice.tolist(), strict=True))}


def background_baseline(cm: torch.Tensor) -> dict:
    """mIoU and pixel accuracy of predicting class 0 everywhere, from the same matrix."""
    truth = cm.sum(1)  # (K,) what a constant predictor sees
    baseline = torch.zeros_like(cm)
    baseline[:, 0] = truth  # every pixel predicted as class 0
    m = segmentation_metrics(baseline)
    return {"baseline_miou": m["miou"], "baseline_pixel_acc": m["pixel_acc"]}


def score_histograms(scores: torch.Tensor, targets: torch.Tensor, bins: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """scores in [0, 1], targets 0/1, both (N, K) -> positives and negatives per score bin,
    each (K, bins) int64. Counts add across batches and DDP ranks, unlike the raw scores."""
    K = scores.shape[1]
    b = (scores.float() * bins).long().clamp_(0, bins - 1)  # (N, K) bin of each score
    idx = torch.arange(K, device=b.device) * bins + b  # (N, K) flat (class, bin) index
    pos = targets.bool()
    return (torch.bincount(idx[pos], minlength=K * bins).reshape(K, bins),  # (K, bins)
            torch.bincount(idx[~pos], minlength=K * bins).reshape(K, bins))


def average_precision(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """(K, bins) histograms -> (K,) AP, NaN for a class without positives.

    AP = sum over thresholds of (recall step) x precision, as scikit-learn's
    `average_precision_score`, with each bin one threshold (scores in a bin are tied).
    """
    tp = pos.flip(1).double().cumsum(1)  # (K, bins) positives scoring >= each bin, high to low
    fp = neg.flip(1).double().cumsum(1)
    n_pos = tp[:, -1:]  # (K, 1)
    precision = tp / (tp + fp).clamp(min=1)
    recall_step = pos.flip(1).double() / n_pos  # (K, bins); 0/0 = NaN where no positives
    return (recall_step * precision).sum(1)

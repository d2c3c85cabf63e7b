"""Metrics computed from sums that can be added across DDP ranks (a confusion matrix).

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
            "per_class": dict(zip(names, per_class)),
            "n": int(n.item())}

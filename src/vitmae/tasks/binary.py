"""Binary classification metrics from additive sums: ROC AUC, ACC at 0.5, and the
all-negative baseline, as MedMNIST reports them (Yang et al. 2023: AUC is scikit-learn's
`roc_auc_score` on the positive-class probability, ACC counts probability > 0.5).

The positive-class probabilities go into histograms of `BINS` bins per true class, which add
across batches and DDP ranks. AUC from them is the Mann-Whitney statistic with the scores in
one bin counted as ties (one half), exactly sklearn's value when no positive and negative
share a bin, and within (shared pairs / all pairs) / 2 of it otherwise.
"""

from __future__ import annotations

import torch

from vitmae.tasks.metrics import score_histograms

BINS = 1 << 16  # probability resolution 1.5e-5


def binary_sums() -> dict[str, torch.Tensor]:
    """Zeroed additive state: score histograms of positives and negatives, (BINS,) each, and
    the count of correct predictions at probability > 0.5."""
    return {"pos_hist": torch.zeros(BINS, dtype=torch.int64),
            "neg_hist": torch.zeros(BINS, dtype=torch.int64),
            "correct_05": torch.zeros((), dtype=torch.int64)}


def add_binary(sums: dict[str, torch.Tensor], logits: torch.Tensor,
               labels: torch.Tensor) -> None:
    """logits (B, 2), labels (B,) 0/1 -> added to `sums` (of `binary_sums`)."""
    prob = logits.float().softmax(-1)[:, 1].cpu()  # (B,) positive-class probability
    labels = labels.cpu().bool()
    pos, neg = score_histograms(prob[:, None], labels[:, None], BINS)  # (1, BINS) each
    sums["pos_hist"] += pos[0]
    sums["neg_hist"] += neg[0]
    sums["correct_05"] += ((prob > 0.5) == labels).sum()


def roc_auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """(BINS,) score histograms of positives and negatives -> ROC AUC; NaN when a class is
    absent (sklearn raises there)."""
    pos, neg = pos.double(), neg.double()
    below = neg.cumsum(0) - neg  # (BINS,) negatives in lower bins
    pairs = pos.sum() * neg.sum()
    return (pos * (below + neg / 2)).sum().div(pairs).item() if pairs > 0 else float("nan")


def binary_metrics(sums: dict[str, torch.Tensor]) -> dict:
    """auc, acc (probability > 0.5) and baseline_acc (every item called negative)."""
    n_pos, n_neg = sums["pos_hist"].sum().item(), sums["neg_hist"].sum().item()
    n = max(n_pos + n_neg, 1)
    return {"auc": roc_auc(sums["pos_hist"], sums["neg_hist"]),
            "acc": sums["correct_05"].item() / n, "baseline_acc": n_neg / n}

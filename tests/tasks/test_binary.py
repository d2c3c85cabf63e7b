"""Binary metrics (AUC, ACC at 0.5, all-negative baseline) against scikit-learn."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import accuracy_score, roc_auc_score

from vitmae.tasks import build_task
from vitmae.tasks.binary import BINS, add_binary, binary_metrics, binary_sums


def logits_for(prob: torch.Tensor) -> torch.Tensor:
    """(N,) positive-class probabilities -> (N, 2) logits with that softmax."""
    return torch.stack([torch.zeros_like(prob), torch.logit(prob.double())], 1)


def metrics_of(prob: torch.Tensor, labels: torch.Tensor, batches: int = 3) -> dict:
    sums = binary_sums()
    for p, y in zip(prob.chunk(batches), labels.chunk(batches), strict=True):
        add_binary(sums, logits_for(p), y)
    return binary_metrics(sums)


@pytest.mark.parametrize("seed", range(4))
def test_auc_acc_and_baseline_match_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(300, generator=g) < 0.25).long()
    prob = (torch.rand(300, generator=g) * 0.8 + 0.2 * labels).clamp(1e-4, 1 - 1e-4)
    m = metrics_of(prob, labels)
    assert m["auc"] == pytest.approx(roc_auc_score(labels, prob), abs=1e-3)
    assert m["acc"] == pytest.approx(accuracy_score(labels, prob > 0.5))
    assert m["baseline_acc"] == pytest.approx((labels == 0).float().mean().item())


def test_auc_is_exact_with_ties_on_the_bin_grid():
    # Scores on bin centres, with ties across the classes: sklearn's ties count one half.
    g = torch.Generator().manual_seed(0)
    bins = torch.randint(1, 20, (200,), generator=g) * (BINS // 20)
    prob = (bins.double() + 0.5) / BINS
    labels = torch.randint(0, 2, (200,), generator=g)
    assert metrics_of(prob, labels)["auc"] == pytest.approx(roc_auc_score(labels, prob),
                                                            abs=1e-12)


def test_one_class_gives_nan_auc():
    assert math.isnan(metrics_of(torch.full((6,), 0.3), torch.zeros(6, dtype=torch.long))["auc"])


def test_classify_evaluator_reports_binary_metrics_for_two_classes():
    task = build_task("classify", num_classes=2)
    ev = task.evaluator()
    labels = torch.tensor([0, 0, 1, 1, 0])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.5], [3.0, 0.0]])
    ev.update(lambda x: x, (logits, labels))
    m = ev.result()
    prob = logits.softmax(-1)[:, 1]
    assert m["auc"] == pytest.approx(roc_auc_score(labels, prob), abs=1e-6)
    assert m["acc"] == m["top1"] == pytest.approx(0.6) and m["baseline_acc"] == 0.6
    assert "auc" not in build_task("classify", num_classes=3).evaluator().result()

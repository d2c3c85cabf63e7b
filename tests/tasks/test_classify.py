"""The classification task's training loss: cross-entropy with the configured label smoothing
and class weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitmae.tasks import build_task
from vitmae.tasks.classify import balanced_weights


class FixedLogits(torch.nn.Module):
    """Returns the same (B, K) logits whatever the images."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, imgs: torch.Tensor, generator=None) -> torch.Tensor:
        return self.logits


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.4])
def test_the_loss_is_cross_entropy_with_the_tasks_label_smoothing(smoothing):
    g = torch.Generator().manual_seed(0)
    logits, labels = 3 * torch.randn(16, 5, generator=g), torch.randint(0, 5, (16,), generator=g)
    task = build_task("classify", num_classes=5, label_smoothing=smoothing)
    loss, metrics = task.train_step(FixedLogits(logits), (torch.zeros(16, 1, 4, 4), labels))
    want = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    torch.testing.assert_close(loss, want)
    if smoothing:  # and the smoothing changes it: the test can tell the two apart
        assert abs(loss.item() - F.cross_entropy(logits, labels).item()) > 1e-3
    assert metrics["acc"] == pytest.approx((logits.argmax(1) == labels).float().mean().item())


def test_balanced_class_weights_follow_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    targets = np.array([0] * 7 + [1] * 2 + [3] * 1)  # class 2 has no items
    got = balanced_weights(targets, 4)
    present = compute_class_weight("balanced", classes=np.array([0, 1, 3]), y=targets)
    np.testing.assert_allclose(got.numpy()[[0, 1, 3]], present, rtol=1e-6)
    assert got[2] == 0
    # every present class then carries the same total weight: n_c * w_c = N / 3
    np.testing.assert_allclose((np.bincount(targets, minlength=4) * got.numpy())[[0, 1, 3]],
                               len(targets) / 3, rtol=1e-6)


def test_class_weights_weigh_the_loss():
    g = torch.Generator().manual_seed(1)
    logits, labels = 3 * torch.randn(16, 3, generator=g), torch.tensor([0] * 12 + [1] * 3 + [2])
    weights = balanced_weights(labels.numpy(), 3)
    task = build_task("classify", num_classes=3, label_smoothing=0.1, class_weights=weights)
    loss, _ = task.train_step(FixedLogits(logits), (torch.zeros(16, 1, 4, 4), labels))
    smoothing_part = F.cross_entropy(logits, labels, weight=weights, label_smoothing=0.1)
    torch.testing.assert_close(loss, smoothing_part)
    # without smoothing: the weighted mean of the per-item losses, weights by each item's class
    task0 = build_task("classify", num_classes=3, class_weights=weights)
    loss0, _ = task0.train_step(FixedLogits(logits), (torch.zeros(16, 1, 4, 4), labels))
    per_item = F.cross_entropy(logits, labels, reduction="none")
    w = weights[labels]
    torch.testing.assert_close(loss0, (w * per_item).sum() / w.sum())
    assert abs(loss0.item() - per_item.mean().item()) > 1e-3  # the weights change it

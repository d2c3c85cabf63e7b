"""The classification task's training loss: cross-entropy with the configured label smoothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitmae.tasks import build_task


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

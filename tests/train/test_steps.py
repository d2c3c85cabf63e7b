"""The step strategies of `vitmae.train.steps`: run.amp=bf16 on a CPU runs the forward pass in
bfloat16 under autocast while the weights and their gradients stay float32."""

from __future__ import annotations

import torch

from vitmae.config import RunConfig
from vitmae.tasks import build_task
from vitmae.train.steps import make_step


def _step(micro_vit, amp: str) -> tuple[float, dict[str, torch.Tensor], torch.nn.Module]:
    """One training step of a seeded micro classifier on a fixed batch under `amp`
    -> (loss, gradients, model)."""
    model = micro_vit(num_classes=4)
    g = torch.Generator().manual_seed(1)
    batch = torch.randn(8, 1, 16, 16, generator=g), torch.randint(0, 4, (8,), generator=g)
    with make_step(model, torch.device("cpu"), RunConfig(amp=amp), accum=1) as step:
        loss, _ = step(build_task("classify", num_classes=4), batch, True)
    return loss, {n: p.grad for n, p in model.named_parameters()}, model


def test_bf16_on_cpu_is_close_to_fp32_and_keeps_float32_weights(micro_vit):
    loss32, grads32, _ = _step(micro_vit, "fp32")
    loss16, grads16, model = _step(micro_vit, "bf16")
    # the loss itself is computed in float32 (autocast's rule for cross-entropy): a loss
    # rounded to bfloat16 would be off by up to 2^-9 of its value, 40x this tolerance
    assert abs(loss16 - loss32) < 1e-4 * abs(loss32)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    flat16 = torch.cat([grads16[n].flatten() for n in grads32])  # (P,)
    flat32 = torch.cat([g.flatten() for g in grads32.values()])  # (P,)
    assert all(grads16[n].dtype == torch.float32 for n in grads32)
    cos = torch.nn.functional.cosine_similarity(flat16, flat32, dim=0)
    assert not torch.equal(flat16, flat32)  # autocast did run the matmuls in bfloat16 ...
    assert cos > 0.999  # ... and only rounding separates them


def test_auto_is_fp32_on_cpu(micro_vit):
    loss32, grads32, _ = _step(micro_vit, "fp32")
    loss, grads, _ = _step(micro_vit, "auto")
    assert loss == loss32 and all(torch.equal(grads[n], grads32[n]) for n in grads32)

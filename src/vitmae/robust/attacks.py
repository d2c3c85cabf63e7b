"""L-inf adversarial attacks on pixel images: FGSM (Goodfellow et al. 2015) and FGSM with a
random start (Wong et al. 2020, "Fast is better than free"), N-FGSM, a training attack
(de Jorge et al. 2022), PGD (Madry et al. 2018), SegPGD
for segmentation (Gu et al., ECCV 2022) and, as the check against gradient masking,
torchattacks' APGD-CE (Croce & Hein 2020).

Images are pixels in [0, 1], `(B, C, H, W)`; eps and step sizes are in pixel units (8/255).
The attacked `model` maps pixels to logits: wrap the network in `Normalized(net, mean, std)`
so that the gradient goes through the normalisation, as RobustBench does; `to_pixels` takes
the data pipeline's normalised tensors back to [0, 1], `from_pixels` returns them.

The loss is `loss_fn(logits, y) -> scalar`; `default_loss` picks it from the targets:
- classification: logits (B, K), y (B,) class indices -> cross-entropy;
- multi-label: logits (B, K), y (B, K) 0/1 (float or int) -> BCE with logits;
- segmentation: logits (B, K, H, W), y (B, H, W) -> per-pixel cross-entropy, void (255) left
  out.

The caller sets the model's mode (eval, for a fixed function of the input). The attacks
change neither it nor any parameter's `requires_grad`, and differentiate w.r.t. the input only
(`torch.autograd.grad`), so no `.grad` builds up in the model; they take gradients even when
called under `torch.no_grad()` (not under `torch.inference_mode()`). Random starts draw from
`generator` (on its device), else from torch's default generator; nothing is seeded here.

    net.eval()
    model = Normalized(net, mean, std)
    x = to_pixels(imgs, mean, std)                    # (B, C, H, W) in [0, 1]
    x_adv = pgd(model, x, labels, eps=8 / 255, alpha=2 / 255, steps=10, generator=g)
    robust_acc = (model(x_adv).argmax(-1) == labels).float().mean()
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitmae.errors import UserError

# The void label of segmentation masks, vitmae.data.palette.VOID: a copy, since this package
# imports only torch and vitmae.errors (a test checks that the two agree).
VOID = 255

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, y) -> scalar


def _per_channel(v: torch.Tensor | Sequence[float], x: torch.Tensor) -> torch.Tensor:
    """mean or std (C,) -> (1, C, 1, ..., 1) on x's device and dtype, to broadcast over
    x (B, C, ...)."""
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    return v.view(1, -1, *[1] * (x.dim() - 2))  # (C,) -> (1, C, 1, 1) for images


class Normalized(nn.Module):
    """pixels (B, C, H, W) in [0, 1] -> model((x - mean) / std): the network as a function of
    the pixels, for attacks in pixel units (and for torchattacks, which expects this)."""

    def __init__(
        self,
        model: nn.Module,
        mean: torch.Tensor | Sequence[float],
        std: torch.Tensor | Sequence[float],
    ):
        super().__init__()
        self.model = model
        mean, std = (torch.as_tensor(v, dtype=torch.float32) for v in (mean, std))  # (C,)
        self.register_buffer("mean", mean, persistent=False)  # follows .to(device)
        self.register_buffer("std", std, persistent=False)
        # the wrapper reports the wrapped model's mode (torchattacks reads it), not nn.Module's
        # default of training
        self.training = model.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(from_pixels(x, self.mean, self.std))


def to_pixels(
    x_norm: torch.Tensor, mean: torch.Tensor | Sequence[float], std: torch.Tensor | Sequence[float]
) -> torch.Tensor:
    """Normalised images (B, C, H, W) -> pixels (B, C, H, W): x * std + mean, clamped to
    [0, 1] (the inverse of the data pipeline's `Normalize`)."""
    return (x_norm * _per_channel(std, x_norm) + _per_channel(mean, x_norm)).clamp(0, 1)


def from_pixels(
    x: torch.Tensor, mean: torch.Tensor | Sequence[float], std: torch.Tensor | Sequence[float]
) -> torch.Tensor:
    """Pixels (B, C, H, W) -> normalised images (B, C, H, W): (x - mean) / std, the data
    pipeline's `Normalize` (what `Normalized` applies before the network)."""
    return (x - _per_channel(mean, x)) / _per_channel(std, x)


def default_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The task's training loss, chosen by the targets' shape (see the module docstring)."""
    if y.shape == logits.shape:  # multi-label: (B, K) 0/1 targets
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
    if y.dim() > 1:  # segmentation: (B, K, H, W) logits, (B, H, W) labels
        return F.cross_entropy(logits, y, ignore_index=VOID)
    return F.cross_entropy(logits, y)  # classification: no class is void (K may exceed 255)


def _input_grad(
    model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss_fn: Loss
) -> torch.Tensor:
    """d loss_fn(model(x_adv), y) / d x_adv: (B, C, H, W); nothing is written to the model's
    parameters' .grad."""
    with torch.enable_grad():
        x_adv = x_adv.detach().requires_grad_(True)
        loss = loss_fn(model(x_adv), y)
        return torch.autograd.grad(loss, x_adv)[0]


def _random_start(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """x (B, C, H, W) + U(-eps, eps) per pixel, clamped to [0, 1] (so still in the eps-ball).
    Drawn as torchattacks' PGD draws it (`uniform_`), on the generator's device."""
    device = generator.device if generator is not None else x.device
    noise = torch.empty(x.shape, device=device).uniform_(-eps, eps, generator=generator)
    return (x + noise.to(x)).clamp(0, 1)


def _ascend(
    model: nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    losses: Sequence[Loss],
) -> torch.Tensor:
    """One sign-gradient ascent step of size alpha per loss in `losses`, each followed by the
    projection to the L-inf eps-ball around x and to [0, 1] (torchattacks' order of the
    clamps). x, x_adv (B, C, H, W) -> the last x_adv, detached."""
    for loss_fn in losses:
        grad = _input_grad(model, x_adv, y, loss_fn)
        x_adv = x_adv.detach() + alpha * grad.sign()
        delta = (x_adv - x).clamp(-eps, eps)
        x_adv = (x + delta).clamp(0, 1)
    return x_adv.detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    loss_fn: Loss | None = None,
) -> torch.Tensor:
    """L-inf PGD (Madry et al. 2018): `steps` steps of alpha * sign(gradient of the loss), each
    projected to the eps-ball around x and to [0, 1], from a uniform random point of the ball
    (random_start) or from x. x (B, C, H, W) in [0, 1] -> adversarial images (B, C, H, W)."""
    x = x.detach()
    x_adv = _random_start(x, eps, generator) if random_start else x.clone()
    return _ascend(model, x, x_adv, y, eps, alpha, [loss_fn or default_loss] * steps)


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    loss_fn: Loss | None = None,
    random_start: bool = False,
    alpha: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """FGSM: one PGD step. From x with step eps (Goodfellow et al. 2015), or with random_start
    from a uniform point of the eps-ball with step 1.25 eps, then projected (Wong et al. 2020:
    a step larger than eps so that the start's offset does not shrink the attack).
    x (B, C, H, W) in [0, 1] -> adversarial images (B, C, H, W)."""
    if alpha is None:
        alpha = 1.25 * eps if random_start else eps
    return pgd(model, x, y, eps, alpha, 1, random_start, generator, loss_fn)


def nfgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float | None = None,
    noise: float | None = None,
    generator: torch.Generator | None = None,
    loss_fn: Loss | None = None,
) -> torch.Tensor:
    """N-FGSM (de Jorge et al., NeurIPS 2022, "Make some noise"): one step of alpha (default
    eps) along the gradient's sign from x plus U(-noise, noise) per pixel (default 2 eps),
    clamped to [0, 1] only: not projected back to the eps-ball, so the perturbation reaches
    noise + alpha. The stronger noise and the unprojected step keep single-step adversarial
    training from catastrophic overfitting at 8/255, where FGSM from a random start (Wong et
    al.) falls into it. A training attack: its images leave the eps-ball, so it measures
    nothing at eps. x (B, C, H, W) in [0, 1] -> perturbed images (B, C, H, W)."""
    alpha = eps if alpha is None else alpha
    x_noisy = _random_start(x.detach(), 2 * eps if noise is None else noise, generator)
    grad = _input_grad(model, x_noisy, y, loss_fn or default_loss)
    return (x_noisy + alpha * grad.sign()).clamp(0, 1).detach()


def segpgd_loss(
    logits: torch.Tensor, y: torch.Tensor, lam: float, ignore_index: int = VOID
) -> torch.Tensor:
    """SegPGD's loss (Gu et al. 2022, eq. 4): logits (B, K, H, W), y (B, H, W) -> scalar:
    per-pixel cross-entropy weighted 1 - lam on the correctly classified pixels and lam on the
    wrong ones, averaged over the non-void pixels (the paper averages over all H*W pixels of
    an image: a positive factor, which a sign step ignores)."""
    ce = F.cross_entropy(logits, y, ignore_index=ignore_index, reduction="none")  # (B, H, W)
    valid = y != ignore_index  # (B, H, W)
    correct = logits.argmax(1) == y  # (B, H, W); no gradient through the split
    weight = torch.where(correct, 1 - lam, lam) * valid  # (B, H, W); 0 at void pixels
    return (weight * ce).sum() / valid.sum().clamp(min=1)


def segpgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    ignore_index: int = VOID,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SegPGD (Gu et al., ECCV 2022): PGD on `segpgd_loss` with lam_t = (t - 1) / (2 T) at
    step t = 1..T, so the first steps push the still-correct pixels and later ones weigh the
    already-wrong pixels up to just under one half. model: pixels -> logits (B, K, H, W);
    x (B, C, H, W) in [0, 1], y (B, H, W) with `ignore_index` void -> adversarial images."""
    x = x.detach()
    x_adv = _random_start(x, eps, generator) if random_start else x.clone()
    losses = [
        partial(segpgd_loss, lam=(t - 1) / (2 * steps), ignore_index=ignore_index)
        for t in range(1, steps + 1)
    ]
    return _ascend(model, x, x_adv, y, eps, alpha, losses)


def apgd_ce(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100, seed: int = 0
) -> torch.Tensor:
    """APGD-CE (Croce & Hein 2020), torchattacks' `APGD(norm='Linf', loss='ce')`: PGD with
    momentum and a step size that halves when the loss stops rising, the first attack of
    AutoAttack. Classification only: model: pixels -> logits (B, K), x (B, C, H, W) in [0, 1],
    y (B,) class indices -> adversarial images (B, C, H, W); the images it does not fool, and
    those the model gets wrong already, are returned clean.

    One run of torchattacks' APGD (`attack_single_run`, seeded with `seed` as its `perturb`
    seeds it) on the whole batch. Its `perturb` attacks only the images still classified
    right, calling the model on that part of the batch; here the model always receives the
    whole batch, so a function tied to its batch (`vitmae.robust.lowres.Lifted`, an attack on
    the stored image's grid) can be attacked too. The result for an image is the same run's.

    The model runs in the mode the caller set: `attack_single_run` leaves it alone (the
    switch to eval and back is in torchattacks' `Attack.__call__`, not called here). The seed
    goes to torch's global generators, as torchattacks' `perturb` puts it there; the CPU and
    initialised CUDA generators are restored afterwards. Left over: with CUDA present but not
    yet initialised, torch queues the CUDA seed for its initialisation.
    """
    try:  # an optional dependency (vitmae[robust]): imported only when asked for
        import torchattacks
    except ImportError:
        raise UserError(
            "apgd_ce needs torchattacks: pip install torchattacks (or 'vitmae[robust]')"
        ) from None
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    x = x.detach()
    with torch.random.fork_rng(devices=cuda):
        attack = torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, seed=seed, loss="ce")
        with torch.no_grad():
            right = model(x).argmax(1) == y  # (B,)
        torch.random.manual_seed(seed)
        _, still_right, _, x_best_adv = attack.attack_single_run(x, y)
    fooled = (right & (still_right == 0)).view(-1, *[1] * (x.dim() - 1))  # (B, 1, 1, 1)
    return torch.where(fooled, x_best_adv, x).detach()

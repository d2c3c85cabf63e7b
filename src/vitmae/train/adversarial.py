"""Adversarial training (`finetune.adversarial`): a task whose training images are replaced by
L-inf adversarial ones before the wrapped task's own step.

- "fgsm": fast adversarial training (Wong, Rice & Kolter 2020, "Fast is better than free"):
  one FGSM step of 1.25 eps from a uniform random point of the eps-ball;
- "pgd": PGD with a random start (Madry et al. 2018), `steps` steps of `alpha`; its loss,
  as FGSM's, is `vitmae.robust.attacks.default_loss`, chosen by the targets: CE (without the
  task's label smoothing), BCE for label vectors, per-pixel CE of the main head without void
  pixels;
- "segpgd": PGD on SegPGD's loss, for segmentation (SegPGD-AT, Gu et al. 2022);
- "nfgsm": N-FGSM (de Jorge et al. 2022): one FGSM step of eps from the image plus noise of
  2 eps, not projected back to the ball; single-step training that does not collapse at 8/255
  as "fgsm" does (catastrophic overfitting).

The attack runs in pixel units through `Normalized` (the data pipeline's mean and std), with
the model in its training mode, as the papers do (drop-path and patch dropout active,
BatchNorm statistics updated). Every random draw of the attack, its start and the model's
drop-path masks in its forward passes, comes from the step's `generator` (None: torch's
default), so a seeded run repeats and a resumed one continues exactly. The attack
differentiates w.r.t. the input only: no `.grad` of a parameter is written before the wrapped
task's step. Its forward passes run inside the step's autocast. The step's loss and metrics
are those of the adversarial batch; evaluation is clean (`evaluator` delegates).

With `fraction` below 1 (finetune.adv_fraction) only the first round(fraction * B) images of a
batch (shuffled by the loader) are attacked and the rest stay clean: the mixed batch of
Goodfellow et al. 2015 and Kurakin et al. 2017 ("Adversarial machine learning at scale"), which
keeps more clean accuracy when the training set is small, at a lower attack cost.

With `size` (finetune.adv_size) the perturbation lives on a size x size grid resized onto the
training crop (`vitmae.robust.lowres`): the stored image's threat model, CIFAR-10's 32 px for
a model trained at 160 or 224 px, as `vitmae robustness --attack-size` measures it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn as nn

from vitmae.robust.attacks import (
    Normalized,
    fgsm,
    from_pixels,
    nfgsm,
    pgd,
    segpgd,
    to_pixels,
)
from vitmae.robust.lowres import at_size, lift
from vitmae.runs.checkpoint import unwrap

Attack = Literal["fgsm", "nfgsm", "pgd", "segpgd"]


class DrawsFrom(nn.Module):
    """A training model as the attacks call it: x (B, C, H, W) -> logits only (a segmenter's
    auxiliary logits dropped), its random draws from `generator`."""

    def __init__(self, model: nn.Module, generator: torch.Generator | None):
        super().__init__()
        self.model, self.generator = model, generator
        self.training = model.training  # reported as the model's, as Normalized does

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x, generator=self.generator)
        return out[0] if isinstance(out, tuple) else out


def default_alpha(attack: Attack, eps: float, steps: int) -> float:
    """The default step size: FGSM with a random start 1.25 eps (Wong et al. 2020: a step
    larger than eps undoes the start's offset); N-FGSM eps (de Jorge et al. 2022); PGD
    2.5 eps / steps, the rule of Madry's lab's `robustness` library (Engstrom et al. 2019):
    together the steps can cross the ball from any start and move along its boundary."""
    if attack == "fgsm":
        return 1.25 * eps
    return eps if attack == "nfgsm" else 2.5 * eps / steps


class AdversarialTask:
    """`task` trained on adversarial images: `train_step(model, batch, generator)` attacks
    batch[0] (normalised (B, C, H, W)) against batch[1] (labels (B,), label vectors (B, K) or
    masks (B, H, W)), the first round(fraction * B) of them, then runs `task.train_step` on
    the result."""

    def __init__(self, task, attack: Attack, eps: float, steps: int, alpha: float | None,
                 mean: Sequence[float], std: Sequence[float], size: int | None = None,
                 fraction: float = 1.0):
        self.task, self.attack, self.eps, self.steps, self.size = task, attack, eps, steps, size
        self.alpha = default_alpha(attack, eps, steps) if alpha is None else alpha
        self.mean, self.std, self.fraction = tuple(mean), tuple(std), fraction

    def train_step(self, model, batch, generator: torch.Generator | None = None):
        k = round(self.fraction * len(batch[0]))  # images attacked: the first k
        if k == 0:  # a shard too small for its share: all clean
            return self.task.train_step(model, batch, generator)
        x_adv = self.perturb(model, (batch[0][:k], batch[1][:k]), generator)  # (k, C, H, W)
        imgs = from_pixels(x_adv, self.mean, self.std)  # (k, C, H, W) normalised
        if k < len(batch[0]):  # the rest as they came: (B, C, H, W)
            imgs = torch.cat([imgs, batch[0][k:]])
        return self.task.train_step(model, (imgs, *batch[1:]), generator)

    def perturb(self, model, batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """The adversarial pixels (B, C, H, W) in [0, 1] of batch[0], within eps of its
        pixels (N-FGSM's within 3 eps); the model under DDP or torch.compile is attacked
        unwrapped (same weights), so that its forward passes start no gradient
        synchronisation."""
        net = Normalized(DrawsFrom(unwrap(model), generator), self.mean, self.std)
        x, y = to_pixels(batch[0], self.mean, self.std), batch[1]  # (B, C, H, W) in [0, 1]
        f, z = at_size(net, x, self.size)  # attacked on (B, C, s, s) when size is set
        if self.attack == "fgsm":
            z = fgsm(f, z, y, self.eps, random_start=True, alpha=self.alpha,
                     generator=generator)
        elif self.attack == "nfgsm":
            z = nfgsm(f, z, y, self.eps, alpha=self.alpha, generator=generator)
        elif self.attack == "segpgd":
            z = segpgd(f, z, y, self.eps, self.alpha, self.steps, generator=generator)
        else:
            z = pgd(f, z, y, self.eps, self.alpha, self.steps, generator=generator)
        return lift(f, z).detach()  # (B, C, H, W)

    def evaluator(self, *args, **kwargs):
        return self.task.evaluator(*args, **kwargs)

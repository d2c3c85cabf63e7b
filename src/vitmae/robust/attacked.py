"""A test split under attack: the adversarial pixels of one batch (`attack_batch`) and the
task's metrics with every image replaced by its adversarial one (`attacked_metrics`).

The counterpart of `vitmae.robust.corrupted` for `vitmae robustness`: the normalisation is
inside the attacked function (`Normalized`), so the radius is in pixel units; PGD and SegPGD
take steps of eps/4 from a random start (Rice et al. 2020), APGD-CE its own 100 iterations.
With `size`, the perturbation is on a size x size grid resized onto the input
(`vitmae.robust.lowres`): the stored image's threat model, e.g. 32 px for CIFAR-10.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitmae.data.loader import make_loader
from vitmae.errors import UsageError
from vitmae.robust.attacks import (
    Normalized,
    apgd_ce,
    fgsm,
    from_pixels,
    pgd,
    segpgd,
    to_pixels,
)
from vitmae.robust.lowres import at_size, lift
from vitmae.train.engine import to_device

ATTACKS = {"classify": ("fgsm", "pgd", "apgd"), "multilabel": ("fgsm", "pgd"),
           "segment": ("fgsm", "segpgd")}


def seg_targets(batch, size: tuple[int, int]) -> torch.Tensor:
    """Segmentation batch (imgs, padded masks (B, Hm, Wm), sizes (B, 2)), or (imgs, masks
    (B, H, W)) as MNIST segmentation's -> labels (B, S, S) at the model's output size: each
    mask cropped to its image and resized (nearest)."""
    masks = batch[1]
    sizes = batch[2] if len(batch) > 2 else [m.shape for m in masks]  # no padding to crop
    out = [F.interpolate(m[None, None, : s[0], : s[1]].float(), size=size,
                         mode="nearest")[0, 0].long() for m, s in zip(masks, sizes, strict=True)]
    return torch.stack(out)  # (B, S, S)


def attack_batch(net: Normalized, task: str, batch, attack: str, eps: float, steps: int,
                 seed: int, g: torch.Generator, size: int | None = None) -> torch.Tensor:
    """The adversarial pixels (B, C, H, W) of one batch (normalised images first); `steps` of
    PGD and SegPGD, their random starts from `g`, APGD-CE seeded with `seed`; the
    perturbation on a size x size grid when `size` is set."""
    x = to_pixels(batch[0], net.mean, net.std)  # (B, C, H, W) in [0, 1]
    y = seg_targets(batch, x.shape[-2:]) if task == "segment" else batch[1]
    if attack not in ATTACKS[task]:
        raise UsageError(f"--attacks: {attack!r} is not an attack of task {task} (expected "
                         f"one of {', '.join(ATTACKS[task])})")
    f, z = at_size(net, x, size)  # the attacked function and its input: (B, C, s, s)
    if attack == "fgsm":
        z = fgsm(f, z, y, eps)
    elif attack == "pgd":
        z = pgd(f, z, y, eps, eps / 4, steps, generator=g)
    elif attack == "segpgd":
        z = segpgd(f, z, y, eps, eps / 4, steps, generator=g)
    else:
        z = apgd_ce(f, z, y, eps, seed=seed)
    return lift(f, z).detach()  # (B, C, H, W)


def attacked_metrics(model, task, task_name: str, ds, stats: tuple, attack: str, eps: float,
                     steps: int, seed: int, batch_size: int, device: torch.device,
                     size: int | None = None) -> dict:
    """The task's metrics of `model` (eval mode) on `ds` (normalised by stats = (mean, std))
    with every image replaced by its adversarial one (perturbed at size x size if set)."""
    net = Normalized(model, *stats).to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    ev = task.evaluator()
    for batch in make_loader(ds, batch_size, train=False):
        batch = to_device(batch, device)
        x_adv = attack_batch(net, task_name, batch, attack, eps, steps, seed, g, size)
        with torch.no_grad():
            ev.update(model, (from_pixels(x_adv, net.mean, net.std),
                              *batch[1:]))
    return ev.result()

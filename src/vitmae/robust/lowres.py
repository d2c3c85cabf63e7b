"""Attacks at an image's stored size: the L-inf perturbation lives on a size x size grid and
is resized bilinearly onto the model's input.

CIFAR-10's standard threat model (RobustBench) perturbs the stored 32 x 32 image; a model that
reads it upsampled to 160 or 224 px then sees the perturbation resized with the image. An
attack on the 224 px input itself may move every pixel independently, a far larger set at the
same eps. `at_size` turns an attack on the input into one at the stored size without
rebuilding the data: the input x (B, C, H, W) is area-resized to z0 (B, C, s, s), the attack
runs on z from z0 (within eps of it, in [0, 1]) against

    Lifted(net, x, z0)(z) = net(clamp(x + resize(z - z0), 0, 1))

and `lift(z)` is that input. Bilinear resizing is a convex combination, so the input moves by
at most eps per pixel too; for an input that is itself the bilinear upsampling of a stored
image (CIFAR-10's test images), it is the stored image's attack up to how z0 stands for it.
Corruption augmentation at the stored size (finetune.corruption_size) shares `shrink` and
`add_change`: a corruption of z0 instead of an attack.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def shrink(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pixels (B, C, H, W) -> (B, C, size, size), area-resized: the grid's starting point."""
    return F.interpolate(x, size=(size, size), mode="area")


def add_change(x: torch.Tensor, z: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) plus the change z - z0 made on the grid (B, C, s, s), resized back
    bilinearly, in [0, 1]: what an attack or a corruption at size s does to x."""
    change = F.interpolate(z - z0, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return (x + change).clamp(0, 1)  # (B, C, H, W)


class Lifted(nn.Module):
    """z (B, C, s, s) -> net(clamp(x + resize(z - z0), 0, 1)): `net` (pixels -> logits) as a
    function of a perturbation on the coarser grid of z0 = x area-resized."""

    def __init__(self, net: nn.Module, x: torch.Tensor, z0: torch.Tensor):
        super().__init__()
        self.net, self.x, self.z0 = net, x, z0
        self.training = net.training  # reported as the network's (torchattacks reads it)

    def lift(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, s, s) -> the input (B, C, H, W) it stands for."""
        return add_change(self.x, z, self.z0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.lift(z))


def at_size(net: nn.Module, x: torch.Tensor, size: int | None
            ) -> tuple[nn.Module, torch.Tensor]:
    """(the function to attack, its starting point) for an attack on pixels x (B, C, H, W) at
    size x size; `size` None or the input's own: (net, x) unchanged. Map the attack's result
    back with `lift`."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return net, x
    z0 = shrink(x, size)  # (B, C, s, s)
    return Lifted(net, x, z0), z0


def lift(net: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The model input of an attack's result z: z itself when `net` is not `Lifted`."""
    return net.lift(z) if isinstance(net, Lifted) else z

"""Corruption augmentation (`finetune.corruption_aug`): a task whose training images are each,
with probability p, replaced by one of the 15 common corruptions of ImageNet-C / CIFAR-10-C
(Hendrycks & Dietterich 2019) at a random severity 1-5, before the wrapped task's own step.

It corrupts the training crop as the model sees it (resized and augmented), in pixel space:
normalised -> pixels -> `vitmae.robust.corruptions.corrupt` -> normalised. `vitmae robustness`
corrupts test images at their stored size instead; doing that here would mean putting the
corruption inside every data set's own transform chain (image transforms, the joint
image-and-mask transforms of segmentation), in DataLoader workers. In the step, one place
serves every data set and task, and every draw (which images, which corruption and severity,
the corruption's own seed) comes from the step's `generator` (None: torch's default), so a
seeded run repeats and a resumed one continues exactly. What follows from it: the corruption's
parameter table is the crop's size's (ImageNet-C's above 64 px, so a CIFAR image upsampled to
160 px gets ImageNet-C's), and segmentation masks are kept as they are, as `vitmae robustness`
keeps them (elastic and zoom blur move pixels a little off their labels). 2-D images with 1 or
3 channels only.

`size` (finetune.corruption_size) corrupts at the stored size instead of the crop's: the crop
is area-resized to size x size, corrupted there (with that size's parameter table), and the
change the corruption made is resized back bilinearly and added to the crop. For a CIFAR image
upsampled to 224 px and corrupted at 32 px, that is the test's corruption (at 32 px, then the
bilinear resize) on the training crop, whose detail the corruption leaves alone stays sharp.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vitmae.robust.attacks import from_pixels, to_pixels
from vitmae.robust.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from vitmae.robust.lowres import add_change, shrink


def draw_corruptions(B: int, p: float, generator: torch.Generator | None
                     ) -> list[tuple[int, str, int, int]]:
    """[(image index, corruption, severity, seed)] for the images of a batch of B picked with
    probability p. Every image's draws are made whether picked or not, so a batch always
    takes the same number of draws from the generator."""
    device = generator.device if generator is not None else "cpu"
    picked = torch.rand(B, generator=generator, device=device) < p  # (B,)
    names = torch.randint(len(CORRUPTIONS), (B,), generator=generator, device=device)
    levels = torch.randint(len(SEVERITIES), (B,), generator=generator, device=device)
    seeds = torch.randint(2**31, (B,), generator=generator, device=device)
    return [(i, CORRUPTIONS[int(names[i])], SEVERITIES[int(levels[i])], int(seeds[i]))
            for i in range(B) if picked[i]]


class CorruptionAugTask:
    """`task` trained on corrupted images: `train_step(model, batch, generator)` replaces
    each image of batch[0] (normalised (B, C, H, W)) with probability p by a corrupted one,
    then runs `task.train_step`; the other images pass bit for bit. `size`: corrupt at
    size x size and add the change, resized back (None: at the crop's own size)."""

    def __init__(self, task, p: float, mean: Sequence[float], std: Sequence[float],
                 size: int | None = None):
        self.task, self.p, self.size = task, p, size
        self.mean, self.std = tuple(mean), tuple(std)

    def train_step(self, model, batch, generator: torch.Generator | None = None):
        return self.task.train_step(model, (self.corrupt(batch[0], generator), *batch[1:]),
                                    generator)

    def corrupt(self, imgs: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        """imgs (B, C, H, W) normalised -> (B, C, H, W), the picked images corrupted."""
        out = imgs
        for i, name, severity, seed in draw_corruptions(imgs.shape[0], self.p, generator):
            if out is imgs:
                out = imgs.clone()  # the caller's batch stays as it was
            x = to_pixels(imgs[i : i + 1], self.mean, self.std)  # (1, C, H, W) in [0, 1]
            y = self._corrupt_one(x, name, severity, seed)  # (1, C, H, W) in [0, 1]
            out[i : i + 1] = from_pixels(y, self.mean, self.std).to(imgs.dtype)
        return out

    def _corrupt_one(self, x: torch.Tensor, name: str, severity: int, seed: int
                     ) -> torch.Tensor:
        """x (1, C, H, W) pixels -> (1, C, H, W) corrupted, at self.size when set."""
        H, W = x.shape[-2:]
        if self.size is None or (H, W) == (self.size, self.size):
            return corrupt(x, name, severity, seed)
        small = shrink(x, self.size)  # (1, C, s, s)
        return add_change(x, corrupt(small, name, severity, seed), small)  # (1, C, H, W)

    def evaluator(self, *args, **kwargs):
        return self.task.evaluator(*args, **kwargs)

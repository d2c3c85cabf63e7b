"""Semantic segmentation: per-pixel cross-entropy (void = 255 ignored); metrics from one
pixel confusion matrix, so they are exact across DDP ranks.

Batches are (img (B, C, H, W), mask (B, H, W)) or, for evaluation at the original size,
(img, mask (B, Hm, Wm) padded with 255, size (B, 2) = original (H0, W0)): the logits of each
image are resized back to (H0, W0) bilinearly before the argmax (as mmsegmentation's
`whole` inference), and compared with the unpadded mask. Volumes come the same way with a
depth axis, (img (B, 1, Dm, Hm, Wm), mask (B, Dm, Hm, Wm), size (B, 3)); with a `window`
(the model's cube) each unpadded volume is segmented by overlapping cubes
(`vitmae.tasks.sliding_window`), at its own size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitmae.data.palette import VOID
from vitmae.tasks.metrics import background_baseline, confusion_matrix, segmentation_metrics
from vitmae.tasks.registry import register_task
from vitmae.tasks.sliding_window import Window, sliding_window


@register_task("segment")
class SegmentTask:
    def __init__(self, num_classes: int, classes: list[str] | None = None,
                 aux_weight: float = 0.0, window: Window | None = None, **_):
        self.K, self.classes, self.aux_weight = num_classes, classes, aux_weight
        self.window = window  # volumes: the model's cube, for sliding-window evaluation

    def train_step(self, model, batch, generator: torch.Generator | None = None):
        imgs, masks = batch[0], batch[1]  # (B, C, H, W), (B, H, W)
        # (B, K, H, W), or with an auxiliary head (logits, aux logits)
        out = model(imgs, generator=generator)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = F.cross_entropy(logits, masks, ignore_index=VOID)
        if aux is not None:  # the auxiliary head's loss, weighted (model.seg_aux)
            loss = loss + self.aux_weight * F.cross_entropy(aux, masks, ignore_index=VOID)
        valid = masks != VOID
        acc = (logits.argmax(1) == masks)[valid].float().mean().item() if valid.any() else 0.0
        return loss, {"pixel_acc": acc}

    def evaluator(self, sink=None):
        return SegmentEvaluator(self.K, self.classes, sink, self.window)


def predict(model, imgs: torch.Tensor, sizes: torch.Tensor | None = None,
            window: Window | None = None) -> list[torch.Tensor]:
    """imgs (B, C, H, W) -> B label maps (H, W), or (H0_i, W0_i) with sizes (B, 2).
    With a `window`: volumes (B, C, Dm, Hm, Wm) -> B label volumes (D0_i, H0_i, W0_i)."""
    if window is not None:
        return [volume_labels(model, img, size, window) for img, size in
                zip(imgs, sizes if sizes is not None else [None] * len(imgs), strict=True)]
    logits = model(imgs).float()  # (B, K, H, W)
    if sizes is None:
        return list(logits.argmax(1))
    return [label_map(lg, tuple(s.tolist())) for lg, s in zip(logits, sizes, strict=True)]


def label_map(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """logits (K, S, S) -> (H0, W0) class indices at the original size `size` = (H0, W0):
    the logits are resized, then the argmax taken (argmax first would resize labels)."""
    return F.interpolate(logits[None], size=size, mode="bilinear",
                         align_corners=False)[0].argmax(0)  # (K, H0, W0) -> (H0, W0)


def volume_labels(model, vol: torch.Tensor, size: torch.Tensor | None,
                  window: Window) -> torch.Tensor:
    """vol (C, Dm, Hm, Wm), padded to `size` (3,) = (D0, H0, W0) -> (D0, H0, W0) labels."""
    if size is not None:
        vol = vol[(slice(None), *unpadded(size))]  # (C, D0, H0, W0)
    logits = sliding_window(model, vol, window.size, window.overlap,
                            pad_value=window.pad_value)  # (K, D0, H0, W0)
    return logits.argmax(0)


def unpadded(size: torch.Tensor) -> tuple[slice, ...]:
    """(H0, W0) or (D0, H0, W0) -> the slices that cut the padding off an item."""
    return tuple(slice(0, int(n)) for n in size)


def volume_window(cfg, ds) -> Window | None:
    """The sliding window of a 3-D segmentation run (the model's data.img_size^3 cube,
    data.volume.overlap, padded with the normalised 0 of `ds`); None for any other run."""
    if cfg.task != "segment" or cfg.model.spatial_dims != 3:
        return None
    return Window(cfg.data.img_size, cfg.data.volume.overlap, -ds.mean[0] / ds.std[0])


class SegmentEvaluator:
    """Sums the pixel confusion matrix; `sink`, if given, receives each batch's label maps
    (a list of (H, W) tensors, in the order of the batch), e.g. to write them as PNGs."""

    def __init__(self, K: int, classes: list[str] | None, sink=None,
                 window: Window | None = None):
        self.K, self.classes, self.sink, self.window = K, classes, sink, window
        self.sums = {"cm": torch.zeros(K, K, dtype=torch.int64),
                     "n": torch.zeros((), dtype=torch.int64)}

    def update(self, model, batch) -> None:
        imgs, masks = batch[0], batch[1]
        sizes = batch[2] if len(batch) > 2 else None
        preds = predict(model, imgs, sizes, self.window)
        if self.sink is not None:
            self.sink(preds)
        for pred, mask, size in zip(preds, masks,
                                    sizes if sizes is not None else [None] * len(masks),
                                    strict=True):
            if size is not None:
                mask = mask[unpadded(size)]  # (Hm, Wm) -> (H0, W0): drop the padding
            self.sums["cm"] += confusion_matrix(pred.cpu(), mask.cpu(), self.K, VOID)
        self.sums["n"] += imgs.shape[0]

    def result(self) -> dict:
        cm = self.sums["cm"]
        return {**segmentation_metrics(cm, self.classes), **background_baseline(cm),
                "n": int(self.sums["n"])}

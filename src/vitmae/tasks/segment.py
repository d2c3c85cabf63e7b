"""Semantic segmentation: per-pixel cross-entropy (void = 255 ignored); metrics from one
pixel confusion matrix, so they are exact across DDP ranks.

Batches are (img (B, C, H, W), mask (B, H, W)) or, for evaluation at the original size,
(img, mask (B, Hm, Wm) padded with 255, size (B, 2) = original (H0, W0)): the logits of each
image are resized back to (H0, W0) bilinearly before the argmax (as mmsegmentation's
`whole` inference), and compared with the unpadded mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitmae.data.palette import VOID
from vitmae.tasks.metrics import background_baseline, confusion_matrix, segmentation_metrics
from vitmae.tasks.registry import register_task


@register_task("segment")
class SegmentTask:
    def __init__(self, num_classes: int, classes: list[str] | None = None,
                 aux_weight: float = 0.0, **_):
        self.K, self.classes, self.aux_weight = num_classes, classes, aux_weight

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
        return SegmentEvaluator(self.K, self.classes, sink)


def predict(model, imgs: torch.Tensor, sizes: torch.Tensor | None = None) -> list[torch.Tensor]:
    """imgs (B, C, H, W) -> B label maps (H, W), or (H0_i, W0_i) with sizes (B, 2)."""
    logits = model(imgs).float()  # (B, K, H, W)
    if sizes is None:
        return list(logits.argmax(1))
    return [label_map(lg, tuple(s.tolist())) for lg, s in zip(logits, sizes, strict=True)]


def label_map(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """logits (K, S, S) -> (H0, W0) class indices at the original size `size` = (H0, W0):
    the logits are resized, then the argmax taken (argmax first would resize labels)."""
    return F.interpolate(logits[None], size=size, mode="bilinear",
                         align_corners=False)[0].argmax(0)  # (K, H0, W0) -> (H0, W0)


class SegmentEvaluator:
    """Sums the pixel confusion matrix; `sink`, if given, receives each batch's label maps
    (a list of (H, W) tensors, in the order of the batch), e.g. to write them as PNGs."""

    def __init__(self, K: int, classes: list[str] | None, sink=None):
        self.K, self.classes, self.sink = K, classes, sink
        self.sums = {"cm": torch.zeros(K, K, dtype=torch.int64),
                     "n": torch.zeros((), dtype=torch.int64)}

    def update(self, model, batch) -> None:
        imgs, masks = batch[0], batch[1]
        sizes = batch[2] if len(batch) > 2 else None
        preds = predict(model, imgs, sizes)
        if self.sink is not None:
            self.sink(preds)
        for pred, mask, size in zip(preds, masks,
                                    sizes if sizes is not None else [None] * len(masks),
                                    strict=True):
            if size is not None:
                mask = mask[: size[0], : size[1]]  # (Hm, Wm) -> (H0, W0): drop the padding
            self.sums["cm"] += confusion_matrix(pred.cpu(), mask.cpu(), self.K, VOID)
        self.sums["n"] += imgs.shape[0]

    def result(self) -> dict:
        cm = self.sums["cm"]
        return {**segmentation_metrics(cm, self.classes), **background_baseline(cm),
                "n": int(self.sums["n"])}

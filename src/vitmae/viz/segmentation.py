"""Pictures of what a segmentation checkpoint does, in PASCAL VOC's colours.

`save_segmentation_grid`: one row per image, image | ground truth | prediction, the label
maps coloured with the VOC palette (void 255 in its cream colour), at the original size; for
volumes, the slice along the first axis that holds the most labelled voxels.
`overlay`: a label map's VOC colours over its image (background left as it is).
`palette_writer`: each prediction of the evaluator's pass as a palette PNG named
`<id or index>.png`, the format of VOC's `SegmentationClass` (the pixel value is the class;
viewers show the colours); a volume's labels as `<id>.npy` (uint8, at the evaluated spacing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vitmae.config import Config
from vitmae.data.palette import VOID, colorize, save_palette_png
from vitmae.models import load_finetuned
from vitmae.tasks.segment import predict, unpadded, volume_window
from vitmae.viz.figures import denormalize, save_grid


@torch.no_grad()
def save_segmentation_grid(cfg: Config, state: dict, ds, batch: list, out: Path) -> Path:
    """batch: items of `ds` ((img, mask) or (img, padded mask, size)) -> PNG at `out`."""
    model = load_finetuned(cfg, state, ds.in_chans, ds.num_classes).eval()
    imgs = torch.stack([b[0] for b in batch])  # (n, C, H, W) or (n, 1, D, H, W)
    sizes = torch.stack([b[2] for b in batch]) if len(batch[0]) > 2 else None  # (n, 2 or 3)
    preds = predict(model, imgs, sizes, volume_window(cfg, ds))
    images = denormalize(imgs, ds.mean, ds.std)
    rows = {"image": [], "ground truth": [], "prediction": []}
    for img, item, pred in zip(images, batch, preds, strict=True):
        truth = item[1][unpadded(torch.tensor(pred.shape))]  # drop the padding, if any
        if pred.dim() == 3:  # a volume: the slice along the first axis with most labels
            z = int(((truth > 0) & (truth != VOID)).flatten(1).sum(1).argmax())
            img = img[(slice(None), *unpadded(torch.tensor(pred.shape)))][:, z]
            truth, pred = truth[z], pred[z]
        img = F.interpolate(img[None], size=tuple(pred.shape), mode="bilinear")[0]
        rows["image"].append(img.expand(3, -1, -1))  # grey -> RGB
        rows["ground truth"].append(colorize(truth))
        rows["prediction"].append(colorize(pred))
    out = Path(out)
    save_grid({k: stack_padded(v) for k, v in rows.items()}, out,
              f"{cfg.data.dataset}: image | ground truth | prediction")
    return out


def stack_padded(pictures: list[torch.Tensor]) -> torch.Tensor:
    """(3, H_i, W_i) each -> (n, 3, max H, max W), padded with white at the bottom right."""
    H, W = max(p.shape[1] for p in pictures), max(p.shape[2] for p in pictures)
    return torch.stack([F.pad(p, (0, W - p.shape[2], 0, H - p.shape[1]), value=1.0)
                        for p in pictures])  # (n, 3, H, W)


def overlay(image: torch.Tensor, labels: torch.Tensor, alpha: float = 0.6) -> torch.Tensor:
    """image (C, H, W) in [0, 1], C = 1 or 3, and labels (H, W) -> (3, H, W): each pixel of
    a class other than background (0) blended with its VOC colour."""
    colour = colorize(labels.cpu())  # (3, H, W)
    rgb = image.cpu().expand(3, -1, -1)  # grey -> RGB
    shown = (labels.cpu() != 0)[None]  # (1, H, W)
    return torch.where(shown, (1 - alpha) * rgb + alpha * colour, rgb)


def palette_writer(ds, out_dir: str | Path, order: Iterable[int]) -> Callable:
    """A sink for the evaluator's predictions: each (H, W) label map, taken as the next item
    of `order` (the indices of `ds` in the order evaluated), becomes `<id or index>.png`."""
    names = getattr(ds, "ids", None) or [f"{i:06d}" for i in range(len(ds))]
    order, out = iter(order), Path(out_dir)

    def write(preds: list[torch.Tensor]) -> None:
        for pred in preds:
            if pred.dim() == 3:  # a volume's labels: no palette PNG holds them
                out.mkdir(parents=True, exist_ok=True)
                np.save(out / f"{names[next(order)]}.npy", pred.cpu().numpy().astype(np.uint8))
            else:
                save_palette_png(pred.cpu(), out / f"{names[next(order)]}.png")
    return write

"""Pictures of what a segmentation checkpoint does, in PASCAL VOC's colours.

`save_segmentation_grid`: one row per image, image | ground truth | prediction, the label
maps coloured with the VOC palette (void 255 in its cream colour), at the original size.
`save_predictions`: each prediction as a palette PNG named `<id or index>.png`, the format
of VOC's `SegmentationClass` (the pixel value is the class; viewers show the colours).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vitmae.config import Config
from vitmae.tasks.segment import predict


def voc_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8: VOC's colour map, class bits spread over the high bits of R, G, B."""
    palette = np.zeros((n, 3), np.uint8)
    for k in range(n):
        c, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):  # bit j of the class sets bit 7 - j//3 of a channel
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[k] = (r, g, b)
    return palette


def colorize(mask: torch.Tensor) -> torch.Tensor:
    """(H, W) class ids 0-255 -> (3, H, W) float RGB in [0, 1]."""
    rgb = torch.from_numpy(voc_palette())[mask.long().clamp(0, 255)]  # (H, W, 3)
    return rgb.permute(2, 0, 1).float() / 255


def save_palette_png(mask: torch.Tensor, path: Path) -> None:
    """(H, W) class ids -> a palette ('P') PNG, as VOC's SegmentationClass files."""
    im = Image.fromarray(mask.to(torch.uint8).numpy(), mode="P")
    im.putpalette(voc_palette().flatten().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def load_segmenter(cfg: Config, state: dict, ds) -> torch.nn.Module:
    from vitmae.models import build_finetune_model

    model, _, _ = build_finetune_model(cfg, ds.in_chans, ds.num_classes)
    model.load_state_dict(state, strict=True)
    return model.eval()


@torch.no_grad()
def save_segmentation_grid(cfg: Config, state: dict, ds, batch: list, out: Path) -> Path:
    """batch: items of `ds` ((img, mask) or (img, padded mask, size)) -> PNG at `out`."""
    from vitmae.visualize import denormalize, save_grid

    model = load_segmenter(cfg, state, ds)
    imgs = torch.stack([b[0] for b in batch])  # (n, C, H, W)
    sizes = torch.stack([b[2] for b in batch]) if len(batch[0]) > 2 else None  # (n, 2)
    preds = predict(model, imgs, sizes)
    images = denormalize(imgs, ds.mean, ds.std)
    rows = {"image": [], "ground truth": [], "prediction": []}
    for img, item, pred in zip(images, batch, preds, strict=True):
        truth = item[1][: pred.shape[0], : pred.shape[1]]  # drop the padding, if any
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


@torch.no_grad()
def save_predictions(cfg: Config, state: dict, ds, out_dir: Path,
                     batch_size: int = 16) -> list[Path]:
    """Every item of `ds` predicted and written to `out_dir` as a palette PNG."""
    model = load_segmenter(cfg, state, ds)
    names = getattr(ds, "ids", None) or [f"{i:06d}" for i in range(len(ds))]
    paths = []
    for start in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
        sizes = torch.stack([b[2] for b in items]) if len(items[0]) > 2 else None
        preds = predict(model, torch.stack([b[0] for b in items]), sizes)
        for k, pred in enumerate(preds):
            paths.append(Path(out_dir) / f"{names[start + k]}.png")
            save_palette_png(pred, paths[-1])
    return paths


def run_save_predictions(cfg: Config, checkpoint, out_dir) -> list[Path]:
    """Predictions of a segmentation checkpoint on cfg.data.val_split as palette PNGs."""
    from vitmae.checkpoint import read_weights
    from vitmae.data import build_dataset

    if cfg.task != "segment":
        raise ValueError(f"saving predictions needs a segmentation run (task: segment), "
                         f"this one has task: {cfg.task}")
    ds = build_dataset(cfg.data, cfg.data.val_split, train=False)
    return save_predictions(cfg, read_weights(checkpoint), ds, Path(out_dir))

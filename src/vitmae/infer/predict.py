"""`run_predict`: a trained model on the user's own images, one JSON line per image.

- classification: `{"path", "topk": [{"index", "class", "prob"}, ...]}`, softmax
  probabilities, highest first (`class` is null where the head's names are not known);
- multi-label: `{"path", "labels": [...]}`, every label whose sigmoid score is at least the
  threshold, highest first, each `{"index", "class", "prob"}`;
- segmentation: the label map at the image's original size (the logits resized bilinearly
  before the argmax, as `vitmae evaluate` does) as a VOC palette PNG `<name>.png` under the
  output folder, the image with every class but 0 (background) coloured over it as
  `<name>.overlay.png`, and `{"path", "mask", "overlay", "classes": [{"index", "class",
  "fraction"}]}` with the share of the image's pixels in each class present; scans of a 3-D
  segmentation run: `vitmae.infer.predict_volumes`.
Names under the output folder keep the images' paths relative to the folder that holds them all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitmae.data.palette import save_palette_png, voc_palette
from vitmae.errors import UsageError
from vitmae.infer.image_files import image_batches
from vitmae.infer.model import FEATURES, InferenceModel
from vitmae.infer.predict_volumes import predict_scans, volume_mask_name
from vitmae.tasks.segment import label_map


def run_predict(model: InferenceModel, paths: Sequence[Path], out: str | Path | None = None,
                topk: int = 5, batch_size: int = 32, threshold: float = 0.5,
                emit: Callable[[str], None] = print) -> tuple[int, list[tuple[Path, str]]]:
    """Predict every image of `paths`, emitting one JSON line each.
    -> (images done, [(path, reason) of the files that could not be read])."""
    if model.task == FEATURES:
        raise UsageError(f"{model.source}: this model has no classification or segmentation "
                         f"head; `vitmae embed` gives its features")
    if topk < 1:
        raise UsageError(f"--topk: must be at least 1, got {topk}")
    names = None
    if model.task == "segment" and model.preprocess.resize == "window":  # whole scans
        if out is None:
            raise UsageError("segmentation: --out DIR is needed for the masks")
        names = mask_paths(paths, Path(out), volume_mask_name, companion=None)
        failed_scans: list[tuple[Path, str]] = []
        done = 0
        for record in predict_scans(model, paths, names, failed_scans):
            emit(json.dumps(record))
            done += 1
        return done, failed_scans
    if model.task == "segment":
        if out is None:
            raise UsageError("segmentation: --out DIR is needed for the masks and overlays")
        names = mask_paths(paths, Path(out))
    elif out is not None:
        raise UsageError(f"--out is for segmentation models; this one ({model.task}) prints "
                         f"its results as JSON lines on stdout")
    failed: list[tuple[Path, str]] = []
    done = 0
    for batch in image_batches(paths, model.preprocess, batch_size, failed):
        logits = model.logits(batch.x)  # (B, K) or (B, K, S, S)
        if model.task == "classify":
            records = [{"path": str(p), "topk": ranked(model, row.softmax(-1), topk)}
                       for p, row in zip(batch.paths, logits, strict=True)]
        elif model.task == "multilabel":
            records = [{"path": str(p), "labels": labels_above(model, row.sigmoid(), threshold)}
                       for p, row in zip(batch.paths, logits, strict=True)]
        else:
            records = [write_segmentation(model, p, img, lg, names[p])
                       for p, img, lg in zip(batch.paths, batch.images, logits, strict=True)]
        for record in records:
            emit(json.dumps(record))
        done += len(records)
    return done, failed


def ranked(model: InferenceModel, probs: torch.Tensor, k: int) -> list[dict]:
    """probs (K,) -> the k most probable classes, highest first."""
    values, indices = probs.topk(min(k, probs.numel()))
    return [{"index": int(i), "class": model.class_name(int(i)), "prob": float(v)}
            for v, i in zip(values, indices, strict=True)]


def labels_above(model: InferenceModel, scores: torch.Tensor, threshold: float) -> list[dict]:
    """scores (K,) -> every label scoring at least `threshold`, highest first."""
    order = scores.argsort(descending=True)
    return [{"index": int(i), "class": model.class_name(int(i)), "prob": float(scores[i])}
            for i in order if scores[i] >= threshold]


def png_name(rel: Path) -> Path:
    return rel.with_suffix(".png")


def overlay_path(mask_path: Path) -> Path:
    return mask_path.with_suffix(".overlay.png")


def mask_paths(paths: Sequence[Path], out: Path, rename=png_name,
               companion=overlay_path) -> dict[Path, Path]:
    """Each image -> `out/<its path relative to the images' common folder>.png` (as `rename`
    says); UsageError when two images would share a name or a mask (or its `companion`
    file, the overlay) would overwrite an input."""
    if not paths:
        return {}
    base = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    names = {p: out / rename(p.resolve().relative_to(base)) for p in paths}
    by_name: dict[Path, list[Path]] = {}
    for p, name in names.items():
        by_name.setdefault(name, []).append(p)
    clash = next((ps for ps in by_name.values() if len(ps) > 1), None)
    if clash:
        raise UsageError(f"{clash[0]} and {clash[1]} would both be written as "
                         f"{names[clash[0]]}; predict them into separate --out folders")
    inputs = {p.resolve() for p in paths}
    hit = [n for n in names.values() if n.resolve() in inputs or
           (companion is not None and companion(n).resolve() in inputs)]
    if hit:
        raise UsageError(f"--out {out}: the masks would overwrite input images (e.g. {hit[0]}); "
                         f"choose another folder")
    return names


def overlay(image: Image.Image, mask: torch.Tensor, alpha: float = 0.5) -> Image.Image:
    """The image (H0, W0) in RGB with the VOC colour of each class but 0 blended over it."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)  # (H0, W0, 3)
    labels = mask.numpy()
    colours = voc_palette()[labels.clip(0, 255)].astype(np.float32)  # (H0, W0, 3)
    mixed = np.where(labels[..., None] > 0, (1 - alpha) * rgb + alpha * colours, rgb)
    return Image.fromarray(mixed.round().astype(np.uint8))


def write_segmentation(model: InferenceModel, path: Path, image: Image.Image,
                       logits: torch.Tensor, mask_path: Path) -> dict:
    """Write the palette PNG and the overlay of one image; -> its JSON record."""
    mask = label_map(logits, (image.height, image.width))  # (H0, W0)
    save_palette_png(mask, mask_path)
    overlay(image, mask).save(overlay_path(mask_path))
    counts = torch.bincount(mask.flatten(), minlength=model.num_classes)  # (K,)
    present = [{"index": k, "class": model.class_name(k), "fraction": c / mask.numel()}
               for k, c in enumerate(counts.tolist()) if c]
    return {"path": str(path), "mask": str(mask_path), "overlay": str(overlay_path(mask_path)),
            "classes": present}

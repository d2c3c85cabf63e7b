"""Accuracy analysis: how a composite-segmentation run (`mnist_seg`) reads whole digits.

For each digit on the first N test canvases (only its visible pixels, and only digits with
at least 20 of them): is the label most of its pixels get (among the digit labels predicted
there) the digit's own, and what share of its digit-labelled pixels agree with that majority
(purity)? Split by the digit's drawn size. Low recognition with high purity means whole
digits are misread (the encoder's job); low purity means the labels of one digit disagree
(the head's job).
Split also by how crowded the digit is: alone in its box, with another digit's strokes in its
box, or with part of its own strokes hidden under a later digit (more or less than 10%).

    VITMAE_DATA=... PYTHONPATH=src python benchmarks/seg_digits.py --checkpoint RUN [--canvases 500]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from common import record, rounded

from vitmae.config import load_config
from vitmae.data import build_dataset
from vitmae.data.mnist_seg import MnistSegmentation, scale_digit
from vitmae.models import load_finetuned
from vitmae.runs.checkpoint import read_weights
from vitmae.runs.folder import run_dir_of

MIN_PIXELS = 20


def digit_reading(pred: torch.Tensor, owner: torch.Tensor, rows: list[list[int]],
                  labels: torch.Tensor) -> list[tuple[int, int, bool, float]]:
    """pred, owner (S, S) of one canvas -> (row, size, majority right, purity) per digit
    with at least MIN_PIXELS visible pixels (row: its index in `rows`, the drawing order)."""
    out = []
    for j, (k, size, *_) in enumerate(rows):
        digit_pixels = pred[(owner == j) & (pred > 0)]  # the digit labels predicted on it
        if int((owner == j).sum()) < MIN_PIXELS or len(digit_pixels) == 0:
            continue
        majority = int(digit_pixels.mode().values)
        purity = float((digit_pixels == majority).float().mean())
        out.append((j, size, majority == int(labels[k]) + 1, purity))
    return out


def crowding(ds: MnistSegmentation, i: int, owner: torch.Tensor) -> list[str]:
    """owner (S, S) of canvas i -> per digit (drawing order): 'alone' (no other digit's pixel
    in its box), 'crowded' (some, none of its own strokes hidden), 'hidden<10%' or
    'hidden>=10%' (that share of its drawn foreground is under a later digit)."""
    out = []
    for j, (k, size, top, left) in enumerate(ds.placed(i)):
        box = owner[top:top + size, left:left + size]  # (size, size)
        drawn = scale_digit(ds.digits[k], size) > ds.threshold  # (size, size) its own strokes
        hidden = 1 - float((box == j).sum()) / max(int(drawn.sum()), 1)
        if hidden > 0:
            out.append("hidden<10%" if hidden < 0.1 else "hidden>=10%")
        else:
            out.append("crowded" if bool(((box >= 0) & (box != j)).any()) else "alone")
    return out


def share_by(readings: list[tuple[str, bool]]) -> dict[str, list]:
    """(group, right) pairs -> {group: [share right, count]}, groups sorted."""
    groups = defaultdict(list)
    for key, right in readings:
        groups[key].append(right)
    return {k: [round(sum(v) / len(v), 3), len(v)] for k, v in sorted(groups.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="a mnist_seg fine-tuning run")
    ap.add_argument("--canvases", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = run_dir_of(args.checkpoint)
    if run is None:
        raise SystemExit(f"{args.checkpoint}: no config.yaml in or above it (not a run folder)")
    cfg = load_config(str(run / "config.yaml"))
    if cfg.data.dataset != "mnist_seg":
        raise SystemExit(f"{run}: data.dataset is {cfg.data.dataset!r}, expected 'mnist_seg'")
    ds = build_dataset(cfg.data, cfg.data.val_split, train=False)
    model = load_finetuned(cfg, read_weights(args.checkpoint), ds.in_chans,
                           ds.num_classes).eval()
    readings, crowd = [], []
    with torch.inference_mode():
        for i in range(min(args.canvases, len(ds))):
            img, _, owner = ds.draw(i)  # one drawing gives the input and who owns each pixel
            pred = model(ds.normalize(img)[None])[0].argmax(0)  # (S, S)
            reading = digit_reading(pred, owner, ds.placed(i), ds.labels)
            kind = crowding(ds, i, owner)
            readings += reading
            crowd += [kind[j] for j, *_ in reading]
    result = rounded({
        "bench": "seg_digits", "run": run.name, "canvases": args.canvases,
        "digits": len(readings),
        "recognized": sum(r for _, _, r, _ in readings) / len(readings),
        "purity": sum(p for *_, p in readings) / len(readings)})
    result["recognized_by_size"] = share_by(
        [(f"{size // 5 * 5}-{size // 5 * 5 + 4}px", r) for _, size, r, _ in readings])
    result["recognized_by_crowding"] = share_by(
        [(k, r) for k, (_, _, r, _) in zip(crowd, readings, strict=True)])
    record(result)


if __name__ == "__main__":
    main()

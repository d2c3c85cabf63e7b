"""Accuracy analysis: how a composite-segmentation run (`mnist_seg`) reads whole digits.

For each digit on the first N test canvases (only its visible pixels, and only digits with
at least 20 of them): is the label most of its pixels get (among the digit labels predicted
there) the digit's own, and what share of its digit-labelled pixels agree with that majority
(purity)? Split by the digit's drawn size. Low recognition with high purity means whole
digits are misread (the encoder's job); low purity means the labels of one digit disagree
(the head's job).

    VITMAE_DATA=... PYTHONPATH=src python benchmarks/seg_digits.py --checkpoint RUN [--canvases 500]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from common import record, rounded

from vitmae.config import load_config
from vitmae.data import build_dataset
from vitmae.evaluation import load_finetuned, run_dir_of

MIN_PIXELS = 20


def digit_reading(pred: torch.Tensor, owner: torch.Tensor, rows: list[list[int]],
                  labels: torch.Tensor) -> list[tuple[int, bool, float]]:
    """pred, owner (S, S) of one canvas -> (size, majority right, purity) per visible digit."""
    out = []
    for j, (k, size, *_) in enumerate(rows):
        digit_pixels = pred[(owner == j) & (pred > 0)]  # the digit labels predicted on it
        if int((owner == j).sum()) < MIN_PIXELS or len(digit_pixels) == 0:
            continue
        majority = int(digit_pixels.mode().values)
        purity = float((digit_pixels == majority).float().mean())
        out.append((size, majority == int(labels[k]) + 1, purity))
    return out


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
    model = load_finetuned(cfg, args.checkpoint, ds.in_chans, ds.num_classes).eval()
    readings = []
    with torch.inference_mode():
        for i in range(min(args.canvases, len(ds))):
            img, _, owner = ds.draw(i)  # one drawing gives the input and who owns each pixel
            pred = model(ds.normalize(img)[None])[0].argmax(0)  # (S, S)
            readings += digit_reading(pred, owner, ds.placed(i), ds.labels)
    by_size = defaultdict(list)
    for size, right, _ in readings:
        by_size[f"{size // 5 * 5}-{size // 5 * 5 + 4}px"].append(right)
    result = rounded({
        "bench": "seg_digits", "run": run.name, "canvases": args.canvases,
        "digits": len(readings),
        "recognized": sum(r for _, r, _ in readings) / len(readings),
        "purity": sum(p for *_, p in readings) / len(readings)})
    result["recognized_by_size"] = {k: [round(sum(v) / len(v), 3), len(v)]
                                    for k, v in sorted(by_size.items())}
    record(result)


if __name__ == "__main__":
    main()

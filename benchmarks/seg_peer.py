"""The CNN peer for composite MNIST segmentation: a small U-Net trained for a wall-clock budget.

A plain U-Net (Ronneberger et al. 2015: two 3x3 conv + BatchNorm + ReLU per level, max-pool
down, transposed-conv up, skips by concatenation; `--width` channels at full resolution,
doubled per level) trains on the same `mnist_seg` canvases as vitmae's preset, in the same
seeded order of the same loader, with AdamW and a cosine schedule over the *time* budget
(the lr is a function of elapsed training seconds, so the schedule ends when the budget
does). Every `--every` minutes of training the clock stops, the model is scored on the test
canvases by vitmae's own evaluator (`engine.evaluate`), and a curve line is printed:

    VITMAE_DATA=... PYTHONPATH=src python benchmarks/seg_peer.py --minutes 45

Evaluation time is not charged to the budget (the peer gets the benefit of the doubt).
The last line is the result as one JSON object, also appended to `results.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from common import record
from torch import nn

from vitmae.config import load_config
from vitmae.data import build_dataset
from vitmae.data.loader import make_loader
from vitmae.tasks import build_task
from vitmae.train.engine import evaluate


def double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True))


class UNet(nn.Module):
    """(B, C, H, W) -> (B, K, H, W) logits; H and W divisible by 2**levels."""

    def __init__(self, in_chans: int, num_classes: int, width: int = 16, levels: int = 3):
        super().__init__()
        widths = [width * 2 ** i for i in range(levels + 1)]  # full resolution ... bottleneck
        self.down = nn.ModuleList([double_conv(in_chans, widths[0])] + [
            double_conv(widths[i], widths[i + 1]) for i in range(levels)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                 for i in reversed(range(levels))])
        self.fuse = nn.ModuleList([double_conv(2 * widths[i], widths[i])
                                   for i in reversed(range(levels))])
        self.out = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)  # (B, width * 2**i, H / 2**i, W / 2**i)
        x = skips.pop()
        for up, fuse in zip(self.up, self.fuse, strict=True):
            x = fuse(torch.cat([up(x), skips.pop()], dim=1))  # (B, 2 w_i, ...) -> (B, w_i, ...)
        return self.out(x)  # (B, K, H, W)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-c", "--config", default="mnist_seg", help="preset whose data to use")
    ap.add_argument("--minutes", type=float, default=45.0, help="training budget")
    ap.add_argument("--every", type=float, default=5.0, help="minutes between evaluations")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [])
    train = build_dataset(cfg.data, cfg.data.train_split, train=True)
    test = build_dataset(cfg.data, cfg.data.val_split, train=False)
    K = train.num_classes
    torch.manual_seed(cfg.run.seed)
    model = UNet(train.in_chans, K, args.width)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    task = build_task("segment", num_classes=K, classes=train.classes)
    budget, every = args.minutes * 60, args.every * 60
    print(json.dumps({"params": params, "train": len(train), "test": len(test),
                      "budget_s": budget}), flush=True)

    curve, trained, seen, epoch, next_eval = [], 0.0, 0, 0, every
    while trained < budget:
        for img, mask in make_loader(train, args.batch, train=True, seed=cfg.run.seed,
                                     epoch=epoch, num_workers=cfg.data.num_workers):
            t0 = time.perf_counter()
            lr = args.lr * 0.5 * (1 + math.cos(math.pi * min(trained / budget, 1.0)))
            for group in opt.param_groups:
                group["lr"] = lr
            loss = nn.functional.cross_entropy(model(img), mask, ignore_index=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            trained += time.perf_counter() - t0
            seen += len(img)
            if trained >= next_eval or trained >= budget:
                m = evaluate(model, task, test, 256, torch.device("cpu"))  # vitmae's evaluator
                model.train()
                point = {"minutes": round(trained / 60, 2), "images": seen,
                         "miou": round(m["miou"], 4), "pixel_acc": round(m["pixel_acc"], 4),
                         "loss": round(loss.item(), 4)}
                curve.append(point)
                print(json.dumps(point), flush=True)
                next_eval += every
            if trained >= budget:
                break
        epoch += 1

    last = curve[-1]
    record({"benchmark": "seg_peer", "model": f"unet_w{args.width}", "params": params,
            "preset": args.config, "minutes": args.minutes, "batch": args.batch,
            "lr": args.lr, "threads": args.threads, "img_s": round(seen / trained, 1),
            "miou": last["miou"], "pixel_acc": last["pixel_acc"],
            "background": round(m["baseline_miou"], 4),
            "curve": curve})


if __name__ == "__main__":
    main()

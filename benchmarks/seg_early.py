"""Accuracy analysis: the start of a segmentation fine-tuning run, mIoU against images seen.

Trains a preset's segmenter (from scratch unless `finetune.pretrained` is given) on the first
`--canvases` training items in a seeded order, with the preset's optimizer, layer decay and
head lr, at a constant lr after a linear warmup over `--warmup-images` images (the same
number of images whatever the batch, so that batch sizes compare at equal data), and
evaluates mIoU and pixel accuracy on the first `--test` test items every `--every` images.
`mnist_seg` from scratch sits on a plateau first (every digit pixel gets the average digit,
mIoU about 0.11); this measures how many images it takes to leave it, e.g. per batch size:

    VITMAE_DATA=... PYTHONPATH=src python benchmarks/seg_early.py -c mnist_seg data.batch_size=32
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import record, rounded
from torch.utils.data import DataLoader, Subset

from vitmae.config import load_config
from vitmae.data import build_dataset
from vitmae.models import build_finetune_model
from vitmae.runs.checkpoint import read_weights
from vitmae.tasks import build_task
from vitmae.train.engine import evaluate
from vitmae.train.optim import base_lr, build_optimizer, param_groups, set_lr
from vitmae.weights.encoder import load_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-c", "--config", default="mnist_seg")
    ap.add_argument("overrides", nargs="*", help="key.sub=value, as for the vitmae commands")
    ap.add_argument("--canvases", type=int, default=48000, help="training images in all")
    ap.add_argument("--every", type=int, default=8000, help="images between evaluations")
    ap.add_argument("--test", type=int, default=1000, help="test images per evaluation")
    ap.add_argument("--warmup-images", type=int, default=12800)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, ["finetune.pretrained=null", *args.overrides])
    train = build_dataset(cfg.data, cfg.data.train_split, train=True)
    test = build_dataset(cfg.data, cfg.data.val_split, train=False)
    torch.manual_seed(cfg.run.seed)
    model, encoder, prefix = build_finetune_model(cfg, train.in_chans, train.num_classes)
    f, o, B = cfg.finetune, cfg.finetune.optim, cfg.data.batch_size
    if f.pretrained:
        load_encoder(encoder, read_weights(f.pretrained))
    lr = base_lr(o, B)
    groups = param_groups(model, o.weight_decay, o.layer_decay, encoder.depth, prefix,
                          f.head_lr_mult)
    optimizer = build_optimizer(groups, o, lr)
    task = build_task(cfg.task, num_classes=train.num_classes,
                      classes=getattr(train, "classes", None), aux_weight=cfg.model.seg_aux)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.run.seed))
    loader = DataLoader(Subset(train, order[: args.canvases].tolist()), batch_size=B,
                        num_workers=cfg.data.num_workers)
    test_part = Subset(test, range(min(args.test, len(test))))
    curve, seen, step, next_eval, t0 = [], 0, 0, args.every, time.time()
    for batch in loader:
        set_lr(optimizer, lr * min(1.0, (step + 1) * B / args.warmup_images))  # then constant
        loss, _ = task.train_step(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen, step = seen + len(batch[0]), step + 1
        if seen >= next_eval:
            m = evaluate(model, task, test_part, 100, torch.device("cpu"))
            point = rounded({"images": seen, "steps": step, "s": time.time() - t0,
                             "loss": loss.item(), "miou": m["miou"],
                             "pixel_acc": m["pixel_acc"]})
            print(json.dumps(point), flush=True)
            curve.append(point)
            next_eval += args.every
    record({"bench": "seg_early", "preset": args.config, "overrides": args.overrides,
            "batch_size": B, "lr": lr, "test_images": args.test, "curve": curve})


if __name__ == "__main__":
    main()

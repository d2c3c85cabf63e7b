"""Reference classifiers for a MedMNIST 3-D preset, outside the ViT: what the data gives to
simple models, on the same splits and the same protocol.

- `voxel_count`: the number of foreground voxels of each volume as the score (no training).
- `logreg`: scikit-learn's L2 logistic regression on the raw voxels (C = 0.01, fitted on the
  training split, as MedMNIST's auto-sklearn also sees flattened voxels).
- `cnn`: a small 3-D CNN (`--width` channels at full resolution, then three stride-2 stages
  doubling it; 3x3x3 convolutions with BatchNorm and ReLU; global average pooling; a linear
  head) trained from scratch on the preset's own training items (vitmae's data set, loader,
  seeds and augmentation), AdamW with a cosine schedule, the test figures taken at the epoch
  of best validation AUC, as MedMNIST's protocol and vitmae's `finetune.best_by=auc` do.

AUC is scikit-learn's `roc_auc_score` on the positive class's probability (or score), ACC
counts that probability > 0.5 (`voxel_count` has no ACC). One JSON line per reference and a
last line with all of them, also appended to `results.jsonl`:

    VITMAE_DATA=... PYTHONPATH=src python benchmarks/volume_references.py -c adrenal3d
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, record
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from torch import nn

from vitmae.config import load_config
from vitmae.data import build_dataset
from vitmae.data.loader import make_loader
from vitmae.data.medmnist3d import npz_path, read_npz


def stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(c_in, c_out, 3, stride, 1, bias=False),
                         nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))


def small_cnn(width: int, num_classes: int) -> nn.Sequential:
    """(B, 1, S, S, S) -> (B, K): one stride-1 stage, three stride-2 stages, average pool."""
    w = [width << i for i in range(4)]
    return nn.Sequential(stage(1, w[0], 1), stage(w[0], w[1], 2), stage(w[1], w[2], 2),
                         stage(w[2], w[3], 2), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                         nn.Linear(w[3], num_classes))


def scores(y: np.ndarray, p: np.ndarray, with_acc: bool = True) -> dict:
    out = {"auc": round(float(roc_auc_score(y, p)), 4)}
    if with_acc:
        out["acc"] = round(float(((p > 0.5) == y).mean()), 4)
    return out


def positive_probs(model: nn.Module, ds) -> np.ndarray:
    model.eval()
    loader = make_loader(ds, 64, train=False)
    with torch.no_grad():
        return torch.cat([model(x).softmax(-1)[:, 1] for x, _ in loader]).numpy()


def train_cnn(cfg, args) -> dict:
    """The small CNN by vitmae's data path; test figures at the best validation AUC."""
    train = build_dataset(cfg.data, cfg.data.train_split, train=True)
    val = build_dataset(cfg.data, cfg.data.val_split, train=False)
    test = build_dataset(cfg.data, cfg.finetune.test_split, train=False)
    y_val, y_test = (ds.targets.numpy() for ds in (val, test))  # no transform run for labels
    torch.manual_seed(cfg.run.seed)
    model = small_cnn(args.width, train.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps = args.epochs * (len(train) // cfg.data.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s /
                                                                                 steps)))
    best, curve, t0 = None, [], time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        for x, y in make_loader(train, cfg.data.batch_size, train=True, seed=cfg.run.seed,
                                epoch=epoch):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        point = {"epoch": epoch, "loss": round(loss.item(), 4),
                 **{f"val_{k}": v for k, v in scores(y_val, positive_probs(model, val)).items()},
                 **{f"test_{k}": v for k, v in scores(y_test,
                                                      positive_probs(model, test)).items()}}
        curve.append(point)
        print(json.dumps(point), flush=True)
        if best is None or point["val_auc"] > best["val_auc"]:
            best = point
    return {"reference": "cnn", "width": args.width, "epochs": args.epochs,
            "best_epoch": best["epoch"], "auc": best["test_auc"], "acc": best["test_acc"],
            "minutes": round((time.perf_counter() - t0) / 60, 1), "curve": curve}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-c", "--config", default="adrenal3d", help="a MedMNIST 3-D preset")
    ap.add_argument("overrides", nargs="*", help="key.sub=value overrides of the preset")
    ap.add_argument("--epochs", type=int, default=10, help="the CNN's; 0: no CNN")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=RESULTS, help="the results file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    path = npz_path(cfg.data)
    (x_train, y_train), (x_test, y_test) = (read_npz(path, s) for s in ("train", "test"))
    flat = [x.reshape(len(x), -1) / 255.0 for x in (x_train, x_test)]
    results = [{"reference": "voxel_count",
                **scores(y_test, (x_test > 0).reshape(len(x_test), -1).sum(1), False)}]
    logreg = LogisticRegression(C=0.01, max_iter=2000).fit(flat[0], y_train)
    results.append({"reference": "logreg", **scores(y_test, logreg.predict_proba(flat[1])[:, 1])})
    for r in results:
        print(json.dumps(r), flush=True)
    if args.epochs:
        results.append(train_cnn(cfg, args))
    row = {"benchmark": "volume_references", "preset": args.config,
           "data": cfg.data.medmnist3d.name, "seed": cfg.run.seed,
           "positives_test": round(float(y_test.mean()), 4), "references": results}
    record(row, packages=("scikit-learn",), path=args.results)
    return row


if __name__ == "__main__":
    main()

"""Frozen-encoder evaluation: k-NN and a linear probe on the features of a pretrained encoder.

The encoder of `--weights` (any checkpoint `finetune.pretrained` accepts: a timm / MAE /
HuggingFace file or a vitmae run) is loaded into the preset's model exactly as fine-tuning
loads it (patch and position resampling included), and never trained. Every training and
test image of the preset's data set, unmasked at the preset's evaluation transform, becomes
one pooled feature; then the two standard frozen-feature protocols score them:
k-NN top-1 (cosine similarity, k nearest vote with weight exp(sim / t), as the MAE monitor)
and a linear probe (softmax regression on standardised features, L-BFGS). Beside them the
trivial baseline (the test split's most frequent class) and the feature extraction time:

    VITMAE_DATA=... PYTHONPATH=src python benchmarks/frozen_features.py \\
        -c cifar10_vit_tiny --weights $VITMAE_DATA/pretrained/<file> data.img_size=224

The last line is the result as one JSON object, also appended to `results.jsonl`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import record, rounded

from vitmae.config import load_config
from vitmae.data import build_dataset
from vitmae.data.registry import FirstItems
from vitmae.models import build_vit
from vitmae.train.monitors import extract_features, knn_classify, linear_probe
from vitmae.weights.pretrained import adopt, load_into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-c", "--config", default="cifar10_vit_tiny")
    ap.add_argument("--weights", required=True, help="the pretrained encoder")
    ap.add_argument("overrides", nargs="*", help="key.sub=value, as for the vitmae commands")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--t", type=float, default=0.07)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="only the first N images of each split (checks)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [f"finetune.pretrained={args.weights}", *args.overrides])
    src = adopt(cfg, args.weights, log=lambda *_: None)
    train = build_dataset(cfg.data, cfg.data.train_split, train=False)  # no augmentation
    test = build_dataset(cfg.data, cfg.data.val_split, train=False)
    if args.limit:
        train, test = FirstItems(train, args.limit), FirstItems(test, args.limit)
    encoder = build_vit(cfg.model, cfg.data.img_size, train.in_chans, num_classes=0)
    load_into(encoder, src, keep_head=False, log=lambda *_: None)
    encoder.eval()

    t0 = time.perf_counter()
    workers = cfg.data.num_workers
    bank, bank_y = extract_features(encoder, train, args.batch, torch.device("cpu"), workers)
    feats, test_y = extract_features(encoder, test, args.batch, torch.device("cpu"), workers)
    extract_s = time.perf_counter() - t0
    K = int(max(bank_y.max(), test_y.max())) + 1
    knn = knn_classify(F.normalize(bank, dim=1), bank_y, F.normalize(feats, dim=1), K,
                       args.k, args.t)
    t1 = time.perf_counter()
    probe = linear_probe(bank, bank_y, feats, K)
    probe_s = time.perf_counter() - t1
    record(rounded({
        "benchmark": "frozen_features", "preset": args.config, "weights": Path(src.path).name,
        "img_size": cfg.data.img_size, "pool": cfg.model.global_pool,
        "train": len(bank), "test": len(feats),
        "knn_top1": (knn == test_y).double().mean().item(),
        "probe_top1": (probe == test_y).double().mean().item(),
        "baseline_top1": torch.bincount(test_y).max().item() / len(test_y),
        "extract_img_s": (len(bank) + len(feats)) / extract_s,
        "minutes": (time.perf_counter() - t0) / 60, "probe_s": probe_s}))


if __name__ == "__main__":
    main()

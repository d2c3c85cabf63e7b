"""Benchmark 3: an end-to-end MAE pretraining run on CIFAR-10, vitmae against the HuggingFace way.

Both sides train the CIFAR preset's MAE (ViT-Tiny/4 encoder, 128 x 4 decoder, mask 0.75,
norm-pix loss) for one epoch over the same first N training images, batch 128, AdamW
(betas 0.9/0.95, wd 0.05), one loader worker, a log record every few steps, 2 threads
(vitmae: `run.shards=2`, its way of using 2 cores; `--shards 1` for intra-op threads):

* vitmae: the library entry point `run_pretrain` with the `cifar10` preset and overrides
  (data.subset=N, pretrain.optim.epochs=1); it also writes its run folder and a checkpoint.
* HuggingFace: `ViTMAEForPreTraining` + `transformers.Trainer` (fused AdamW, cosine schedule,
  no evaluation, no checkpoint) over the same images with the same transforms.

The runs alternate (vitmae, HF, vitmae, ...) and each is timed from the call to its return,
so data loading, augmentation, steps, logging and start-up are all inside. vitmae's
entry point ends an epoch with an evaluation on the test split; the HF run has none, so the
benchmark makes it a no-op (`common.pretrain_without_evaluation`). vitmae's
`run.keep_freed_memory` (glibc's allocator, process-wide) is set by its first run, so every
HF run trains under it too: the two sides differ in their code, not in their allocator.

    VITMAE_DATA=<data root> PYTHONPATH=src python benchmarks/pipeline.py [--images 1280]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from common import (
    per_round_ratio,
    pretrain_without_evaluation,
    record,
    rounded,
    spread,
    use_passive_omp,
)
from mae_step import build_hf

from vitmae.config import load_config
from vitmae.data import build_dataset

BATCH, WORKERS, THREADS = 128, 1, 2


def vitmae_config(images: int, out: str, log_every: int, shards: int = 1):
    return load_config("cifar10", [f"data.subset={images}", "pretrain.optim.epochs=1",
                                   f"data.batch_size={BATCH}", f"data.num_workers={WORKERS}",
                                   f"run.threads={THREADS}", f"run.output_dir={out}",
                                   f"run.log_interval={log_every}", "run.device=cpu",
                                   f"run.shards={shards}"])


def run_vitmae(images: int, out: str, log_every: int, shards: int) -> float:
    """-> wall seconds of `run_pretrain` (one epoch, its run folder and checkpoint)."""
    t0 = time.perf_counter()
    pretrain_without_evaluation(vitmae_config(images, out, log_every, shards))
    return time.perf_counter() - t0


class PixelValues(torch.utils.data.Dataset):
    """vitmae's CIFAR-10 training set (same transforms) as the dicts HF's Trainer expects."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        return {"pixel_values": self.dataset[i][0]}  # (C, H, W) float32, normalized


def run_hf(images: int, out: str, log_every: int) -> float:
    """-> wall seconds of building the data set, the model and the Trainer, and training."""
    from transformers import Trainer, TrainingArguments

    t0 = time.perf_counter()
    cfg = vitmae_config(images, out, log_every)
    torch.set_num_threads(THREADS)
    data = PixelValues(build_dataset(cfg.data, "train", train=True))
    o = cfg.pretrain.optim
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=1,
        learning_rate=o.blr * BATCH / 256, weight_decay=o.weight_decay, adam_beta1=o.betas[0],
        adam_beta2=o.betas[1], lr_scheduler_type="cosine", warmup_steps=len(data) // BATCH,
        logging_steps=log_every, save_strategy="no", eval_strategy="no", report_to=[],
        dataloader_num_workers=WORKERS, dataloader_drop_last=True, use_cpu=True, seed=0,
        disable_tqdm=True)
    Trainer(model=build_hf(), args=args, train_dataset=data).train()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=1280,
                    help="training images per run (10000: the full epoch of the issue)")
    ap.add_argument("--rounds", type=int, default=2, help="runs per side, alternating")
    ap.add_argument("--log-every", type=int, default=5, help="steps between log records")
    ap.add_argument("--shards", type=int, default=THREADS,
                    help="vitmae's run.shards (1: intra-op threads only)")
    args = ap.parse_args()
    use_passive_omp()
    if not os.environ.get("VITMAE_DATA"):
        raise SystemExit("pipeline.py: set VITMAE_DATA to the folder holding "
                         "cifar-10-batches-py/")
    ours, peer = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            ours.append(run_vitmae(args.images, os.path.join(tmp, f"vitmae{r}"), args.log_every,
                                   args.shards))
            peer.append(run_hf(args.images, os.path.join(tmp, f"hf{r}"), args.log_every))
    n = args.images // BATCH * BATCH  # both drop the last partial batch
    ratio = spread(per_round_ratio(ours, peer))
    result = {
        "bench": "pipeline",
        "vitmae_img_s": n / statistics.median(ours), "peer_img_s": n / statistics.median(peer),
        "peer": "transformers.ViTMAEForPreTraining + Trainer",
        "ratio": ratio["median"], "ratio_min": ratio["p10"], "ratio_max": ratio["p90"],
        "vitmae_wall_s": statistics.median(ours), "peer_wall_s": statistics.median(peer),
        "images": n, "batch": BATCH, "threads": THREADS, "workers": WORKERS,
        "shards": args.shards,
        "rounds": args.rounds,
    }
    record(rounded(result), packages=("transformers", "accelerate"))


if __name__ == "__main__":
    main()

"""Benchmark 2: one supervised fine-tuning step on the CPU, vitmae's ViT against timm's.

The encoder of the CIFAR preset with a 10-class head: fp32, batch 64 of 32x32x3, patch 4,
192 wide, 12 deep, 3 heads, class token + 64 patch tokens, average pooling of the patch
tokens, stochastic depth 0.1 (the preset's), cross-entropy, the same fused torch AdamW on
both sides. timm's `VisionTransformer` uses fused attention (SDPA), as ours. Steps alternate
in one process with a large fp32 matmul (the ceiling); figures are medians of rounds.

    PYTHONPATH=src python benchmarks/finetune_step.py [--rounds 10] [--threads 2] [--batch 64]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from common import (
    count_flops,
    interleave,
    matmul_step,
    record,
    rounded,
    sdpa_flops,
    sharded_figures,
    sharded_step,
    step_figures,
    use_passive_omp,
)

from vitmae.config import ModelConfig
from vitmae.models import build_vit

IMG, P, C, K = 32, 4, 3, 10
WIDTH, DEPTH, HEADS, DROP_PATH = 192, 12, 3, 0.1
LR, WD = 1e-3, 0.05


def build_vitmae() -> torch.nn.Module:
    return build_vit(ModelConfig(arch="vit_tiny_patch4", drop_path=DROP_PATH,
                                 global_pool="avg"), IMG, C, num_classes=K)


def build_timm() -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=IMG, patch_size=P, in_chans=C, num_classes=K,
                             embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS, mlp_ratio=4.0,
                             global_pool="avg", class_token=True, drop_path_rate=DROP_PATH)


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD, fused=True)

    def step():
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shards", type=int, default=None,
                    help="vitmae's run.shards (default: --threads; 1: intra-op threads only)")
    args = ap.parse_args()
    args.shards = args.threads if args.shards is None else args.shards
    use_passive_omp()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, C, IMG, IMG)  # (B, C, H, W)
    y = torch.randint(0, K, (args.batch,))  # (B,)
    ours, peer = build_vitmae().train(), build_timm().train()

    n_tok = 1 + (IMG // P) ** 2
    attn = DEPTH * sdpa_flops(args.batch, HEADS, n_tok, n_tok, WIDTH // HEADS)
    flops = count_flops(lambda: F.cross_entropy(ours(x), y).backward()) + attn
    ours.zero_grad(set_to_none=True)

    mm, mm_flops = matmul_step()
    if args.shards > 1:  # vitmae as the engine runs it with run.shards, and without
        opt = torch.optim.AdamW(ours.parameters(), lr=LR, weight_decay=WD, fused=True)
        steps = {"vitmae": sharded_step(ours, opt, lambda m, xs, ys: F.cross_entropy(m(xs), ys),
                                        [x, y], args.shards),
                 "vitmae_unsharded": make_step(build_vitmae().train(), x, y)}
    else:
        steps = {"vitmae": make_step(ours, x, y)}
    times = interleave({**steps, "peer": make_step(peer, x, y), "matmul": mm},
                       rounds=args.rounds, warmup=args.warmup)
    result = {
        "bench": "finetune_step",
        "peer": "timm.VisionTransformer",
        **step_figures(times, flops, mm_flops, args.batch),
        **sharded_figures(times, args.batch, args.shards),
        "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
    }
    record(rounded(result), packages=("timm",))


if __name__ == "__main__":
    main()

"""Benchmark 1: one MAE pretraining step on the CPU, vitmae against HuggingFace's ViTMAE.

The shape of the CIFAR preset: fp32, batch 64 of 32x32x3, patch 4, encoder 192 wide and 12
deep (3 heads, MLP 768), decoder 128 wide and 4 deep (4 heads, MLP 512), mask ratio 0.75,
per-patch normalised targets. Both sides get the same fused torch AdamW and SDPA attention;
steps alternate in one process with a large fp32 matmul (the machine's practical ceiling), and
the figures are medians of per-round values.

FLOPs per image: FlopCounterMode counts the matmuls of forward + backward; attention (SDPA,
which it does not see on CPU) is added analytically.

    PYTHONPATH=src python benchmarks/mae_step.py [--rounds 10] [--threads 2] [--batch 64]
"""

from __future__ import annotations

import argparse

import torch
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

from vitmae.config import ModelConfig, OptimConfig
from vitmae.models import build_mae
from vitmae.train.optim import build_optimizer, param_groups

IMG, P, C = 32, 4, 3
BATCH_SHAPE = (C, IMG, IMG)  # one image: (C, H, W)
ENC = dict(width=192, depth=12, heads=3, mlp=768)
DEC = dict(width=128, depth=4, heads=4, mlp=512)
MASK_RATIO, LR, WD = 0.75, 1.5e-4, 0.05


def build_vitmae() -> torch.nn.Module:
    cfg = ModelConfig(arch="vit_tiny_patch4", decoder_embed_dim=DEC["width"],
                      decoder_depth=DEC["depth"], decoder_num_heads=DEC["heads"],
                      mask_ratio=MASK_RATIO, norm_pix_loss=True)
    return build_mae(cfg, IMG, C)


def build_hf() -> torch.nn.Module:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    cfg = ViTMAEConfig(image_size=IMG, patch_size=P, num_channels=C, hidden_size=ENC["width"],
                       num_hidden_layers=ENC["depth"], num_attention_heads=ENC["heads"],
                       intermediate_size=ENC["mlp"], decoder_hidden_size=DEC["width"],
                       decoder_num_hidden_layers=DEC["depth"],
                       decoder_num_attention_heads=DEC["heads"],
                       decoder_intermediate_size=DEC["mlp"], mask_ratio=MASK_RATIO,
                       norm_pix_loss=True)
    try:
        return ViTMAEForPreTraining._from_config(cfg, attn_implementation="sdpa")
    except (TypeError, ValueError):  # older transformers without SDPA for ViTMAE
        return ViTMAEForPreTraining(cfg)


def make_step(model: torch.nn.Module, opt: torch.optim.Optimizer, forward):
    """One optimizer step of `model` on a fixed batch; `forward(model)` returns the loss."""

    def step():
        loss = forward(model)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def attention_flops(batch: int) -> float:
    """Attention FLOPs of one MAE step: encoder on 1 + kept tokens, decoder on 1 + L tokens."""
    L = (IMG // P) ** 2
    n_enc = 1 + int(L * (1 - MASK_RATIO))
    enc = ENC["depth"] * sdpa_flops(batch, ENC["heads"], n_enc, n_enc, ENC["width"] // ENC["heads"])
    dec = DEC["depth"] * sdpa_flops(batch, DEC["heads"], L + 1, L + 1, DEC["width"] // DEC["heads"])
    return enc + dec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10, help="timed rounds (one step each side)")
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
    x = torch.randn(args.batch, *BATCH_SHAPE)  # (B, C, H, W)

    ours = build_vitmae().train()
    peer = build_hf().train()
    ours_opt = build_optimizer(param_groups(ours, WD), OptimConfig(), LR)
    peer_opt = torch.optim.AdamW(peer.parameters(), lr=LR, weight_decay=WD, fused=True)

    def ours_loss(m, xs=x):
        return m(xs)[0]

    def peer_loss(m):
        return m(pixel_values=x).loss

    attn = attention_flops(args.batch)
    flops = count_flops(lambda: ours_loss(ours).backward()) + attn
    peer_flops = count_flops(lambda: peer_loss(peer).backward()) + attn
    ours.zero_grad(set_to_none=True)
    peer.zero_grad(set_to_none=True)

    mm, mm_flops = matmul_step()
    if args.shards > 1:  # vitmae as the engine runs it with run.shards, and without
        plain = build_vitmae().train()
        plain_opt = build_optimizer(param_groups(plain, WD), OptimConfig(), LR)
        steps = {"vitmae": sharded_step(ours, ours_opt, ours_loss, [x], args.shards),
                 "vitmae_unsharded": make_step(plain, plain_opt, ours_loss)}
    else:
        steps = {"vitmae": make_step(ours, ours_opt, ours_loss)}
    times = interleave({**steps, "peer": make_step(peer, peer_opt, peer_loss), "matmul": mm},
                       rounds=args.rounds, warmup=args.warmup)
    result = {
        "bench": "mae_step",
        "peer": "transformers.ViTMAEForPreTraining",
        **step_figures(times, flops, mm_flops, args.batch),
        **sharded_figures(times, args.batch, args.shards),
        "peer_gflop_per_img": peer_flops / args.batch / 1e9,
        "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
    }
    record(rounded(result), packages=("transformers",))


if __name__ == "__main__":
    main()

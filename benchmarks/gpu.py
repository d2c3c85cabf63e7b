"""Benchmark 6: MAE pretraining of ViT-B/16 at 224 px on one GPU, and its model FLOPs use (MFU).

The MAE paper's model (ViT-B/16 encoder, 512-wide 8-deep decoder, mask 0.75, norm-pix loss),
bf16 autocast, fused attention (SDPA restricted to the flash kernel), fused AdamW. Two modes:
eager and `torch.compile`; with --peer, HuggingFace's ViTMAEForPreTraining of the same shape
runs eagerly under the same settings. img/s is timed over CUDA-synchronised steps after
warm-up; MFU = model FLOPs per second / the chip's dense bf16 peak, FLOPs counted by
FlopCounterMode (attention added analytically if the counter did not see it).

The whole script stays under --max-minutes (default 9): later modes are skipped, with a note,
when time runs short. Without CUDA it exits with a message; `--dry-run` runs a tiny model on
the CPU to check the script itself.

    PYTHONPATH=src python benchmarks/gpu.py [--batch 256] [--steps 30] [--peak-tflops T]
    PYTHONPATH=src python benchmarks/gpu.py --dry-run
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch
from common import RESULTS, record, rounded, sdpa_flops

from vitmae.config import ModelConfig, OptimConfig
from vitmae.models import build_mae
from vitmae.train.optim import build_optimizer, param_groups

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by device name; first match wins.
PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
               ("L4", 121.0))
FULL = dict(arch="vit_base_patch16", img=224, dec_width=512, dec_depth=8, dec_heads=16)
TINY = dict(arch="vit_micro_patch4", img=32, dec_width=32, dec_depth=1, dec_heads=2)


def peak_tflops(name: str, given: float | None) -> float | None:
    if given:
        return given
    return next((tf for key, tf in PEAK_TFLOPS if key in name), None)


def build(shape: dict) -> torch.nn.Module:
    cfg = ModelConfig(arch=shape["arch"], decoder_embed_dim=shape["dec_width"],
                      decoder_depth=shape["dec_depth"], decoder_num_heads=shape["dec_heads"],
                      mask_ratio=0.75, norm_pix_loss=True, drop_path=0.0)
    return build_mae(cfg, shape["img"], 3)


def build_peer(shape: dict) -> torch.nn.Module:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    enc = build(shape).encoder
    cfg = ViTMAEConfig(image_size=shape["img"], patch_size=enc.patch_size, num_channels=3,
                       hidden_size=enc.embed_dim, num_hidden_layers=enc.depth,
                       num_attention_heads=enc.num_heads, intermediate_size=4 * enc.embed_dim,
                       decoder_hidden_size=shape["dec_width"],
                       decoder_num_hidden_layers=shape["dec_depth"],
                       decoder_num_attention_heads=shape["dec_heads"],
                       decoder_intermediate_size=4 * shape["dec_width"], mask_ratio=0.75,
                       norm_pix_loss=True)
    return ViTMAEForPreTraining._from_config(cfg, attn_implementation="sdpa")


def attention_flops(model: torch.nn.Module, batch: int) -> float:
    """Analytic attention FLOPs (forward + backward) of one MAE step of our model."""
    enc = model.encoder
    L = enc.patch_embed.num_patches
    n_enc = 1 + int(L * (1 - model.mask_ratio))
    hd = enc.embed_dim // enc.num_heads
    dec = model.decoder_blocks
    dec_heads = dec[0].attn.num_heads
    dec_hd = model.decoder_embed.out_features // dec_heads
    return (enc.depth * sdpa_flops(batch, enc.num_heads, n_enc, n_enc, hd)
            + len(dec) * sdpa_flops(batch, dec_heads, L + 1, L + 1, dec_hd))


def sdpa_context(device: torch.device):
    """SDPA restricted to the flash kernel (the point of this benchmark) where it exists."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older torch: whatever SDPA picks
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION])


def time_steps(step, warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per step, after `warmup` steps (compilation happens there)."""
    for _ in range(warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps


def make_step(model, opt, x, device, peer: bool = False):
    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16), sdpa_context(device):
            loss = model(pixel_values=x).loss if peer else model(x)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--peak-tflops", type=float, help="dense bf16 peak, if not in the table")
    ap.add_argument("--no-peer", dest="peer", action="store_false",
                    help="skip HuggingFace's ViTMAE")
    ap.add_argument("--max-minutes", type=float, default=9.0)
    ap.add_argument("--dry-run", action="store_true", help="tiny model on the CPU")
    ap.add_argument("--results", type=Path, default=RESULTS, help="results file to append to")
    args = ap.parse_args()
    start = time.perf_counter()
    if args.dry_run:
        device, shape = torch.device("cpu"), TINY
        args.batch, args.steps, args.warmup = 4, 2, 1
    elif not torch.cuda.is_available():
        raise SystemExit("gpu.py: no CUDA device here; run it on a machine with an NVIDIA GPU "
                         "(or with --dry-run to check the script on the CPU)")
    else:
        device, shape = torch.device("cuda"), FULL
        torch.backends.cuda.matmul.allow_tf32 = True  # the fp32 parts (optimizer, loss)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (dry run)"
    peak = peak_tflops(name, args.peak_tflops)
    torch.manual_seed(0)
    S = shape["img"]
    x = torch.randn(args.batch, 3, S, S, device=device)  # (B, C, H, W)

    model = build(shape).to(device).train()
    opt = build_optimizer(param_groups(model, 0.05), OptimConfig(betas=(0.9, 0.95)), 1.5e-4)
    with torch.autocast(device.type, dtype=torch.bfloat16), sdpa_context(device):
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            model(x)[0].backward()
    flops = float(counter.get_total_flops())
    seen = {str(op) for op in counter.get_flop_counts().get("Global", {})}
    attention_counted = any("attention" in op for op in seen)
    if not attention_counted:  # e.g. the CPU flash kernel: add it by hand
        flops += attention_flops(model, args.batch)
    model.zero_grad(set_to_none=True)

    result: dict = {"bench": "gpu_mae_vitb16" if not args.dry_run else "gpu_dry_run",
                    "device": name, "batch": args.batch, "img": S, "steps": args.steps,
                    "gflop_per_img": flops / args.batch / 1e9, "peak_tflops": peak,
                    "attention_flops": "counted" if attention_counted else "analytic"}
    modes = ["eager", "compile"] + (["peer_eager"] if args.peer else [])
    if args.dry_run:  # compiling on a CPU takes minutes; the GPU run covers it
        modes = [m for m in modes if m != "compile"]
    for mode in modes:
        minutes = (time.perf_counter() - start) / 60
        if minutes > args.max_minutes * (0.5 if mode == "compile" else 0.8):
            result[f"{mode}_skipped"] = f"time budget: {minutes:.1f} min used"
            continue
        torch.manual_seed(0)
        if mode == "peer_eager":
            net = build_peer(shape).to(device).train()
            peer_opt = torch.optim.AdamW(net.parameters(), lr=1.5e-4, betas=(0.9, 0.95),
                                         weight_decay=0.05, fused=True)
            step = make_step(net, peer_opt, x, device, peer=True)
        else:
            net = torch.compile(model) if mode == "compile" else model
            step = make_step(net, opt, x, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        sec = time_steps(step, args.warmup, args.steps, device)
        result[f"{mode}_img_s"] = args.batch / sec
        result[f"{mode}_warmup_s"] = time.perf_counter() - t0 - sec * args.steps
        if mode != "peer_eager":
            result[f"{mode}_tflop_s"] = flops / sec / 1e12
            result[f"{mode}_mfu"] = flops / sec / 1e12 / peak if peak else None
        if device.type == "cuda":
            result[f"{mode}_peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30
        print(mode, rounded({k: v for k, v in result.items() if k.startswith(mode)}),
              flush=True)
        del net, step
    if "peer_eager_img_s" in result and "eager_img_s" in result:
        result["eager_ratio_vs_peer"] = result["eager_img_s"] / result["peer_eager_img_s"]
    result["wall_min"] = (time.perf_counter() - start) / 60
    record(rounded(result), packages=("transformers",), path=args.results)


if __name__ == "__main__":
    main()

"""Benchmark 5: inference images/s of the fine-tuned models, at batch 1 and batch 64.

Classification: vit_mini_patch4 at 28 px (the MNIST preset, 1 channel) and vit_tiny_patch4
at 32 px (the CIFAR preset, 3 channels), 10 classes; the latter also against timm's
`VisionTransformer` of the same shape, alternating. Segmentation: the Segmenter of the
`mnist_seg` preset (vit_mini_patch8 at 64 px, PUP head, 11 classes) and a VOC-shaped one
(vit_mini_patch8 at 128 px, linear head, 21 classes). eval mode, `torch.inference_mode`,
fp32, 2 threads; random weights (speed does not depend on them).

    PYTHONPATH=src python benchmarks/inference.py [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from common import interleave, record, rounded, use_passive_omp

from vitmae.config import load_config
from vitmae.models import build_finetune_model

# name -> (preset, overrides, in_chans, classes)
MODELS = {
    "cls_mini_28": (None, ["model.arch=vit_mini_patch4", "data.img_size=28"], 1, 10),
    "cls_tiny_32": (None, ["model.arch=vit_tiny_patch4", "data.img_size=32"], 3, 10),
    "seg_mnist_64": ("mnist_seg", [], 1, 11),
    "seg_voc_128": (None, ["task=segment", "model.arch=vit_mini_patch8", "data.img_size=128"],
                    3, 21),
}
BATCHES = (1, 64)


def build(name: str) -> tuple[torch.nn.Module, int, int]:
    """-> (model in eval mode, in_chans, image size)."""
    preset, overrides, in_chans, classes = MODELS[name]
    cfg = load_config(preset, overrides)
    model, _, _ = build_finetune_model(cfg, in_chans, classes)
    return model.eval(), in_chans, cfg.data.img_size


def build_timm_tiny() -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=4, in_chans=3, num_classes=10,
                             embed_dim=192, depth=12, num_heads=3, global_pool="avg").eval()


def forward_n(model: torch.nn.Module, x: torch.Tensor, calls: int):
    def run():
        with torch.inference_mode():
            for _ in range(calls):
                model(x)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=16, help="images per timed call at batch 1")
    args = ap.parse_args()
    use_passive_omp()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result: dict = {"bench": "inference"}
    for name in MODELS:
        try:
            model, C, S = build(name)
        except (ImportError, ValueError) as e:  # e.g. no segmentation model in this version
            result[f"{name}_skipped"] = str(e)[:200]
            continue
        peer = build_timm_tiny() if name == "cls_tiny_32" else None
        for B in BATCHES:
            x = torch.randn(B, C, S, S)  # (B, C, H, W)
            calls = max(1, args.images // B)
            steps = {"vitmae": forward_n(model, x, calls)}
            if peer is not None:
                steps["peer"] = forward_n(peer, x, calls)
            times = interleave(steps, rounds=args.rounds, warmup=1)
            for side, ts in times.items():
                key = f"{name}_b{B}" if side == "vitmae" else f"{name}_b{B}_timm"
                result[f"{key}_img_s"] = calls * B / statistics.median(ts)
            if peer is not None:
                result[f"{name}_b{B}_ratio"] = statistics.median(
                    p / o for o, p in zip(times["vitmae"], times["peer"], strict=True))
    result["threads"] = args.threads
    record(rounded(result), packages=("timm",))


if __name__ == "__main__":
    main()

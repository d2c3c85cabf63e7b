"""Inference images/s of one ViT-Tiny/16 classifier at 224 px in five runtimes, side by side.

vitmae eager (`vitmae.infer.model.open_model` on the weights file), the same model exported by
`vitmae export --to onnx` and run by onnxruntime in fp32 and with int8 dynamic quantisation,
timm's `vit_tiny_patch16_224` eager and HuggingFace's `ViTForImageClassification` (SDPA
attention), all with the same weights: the ImageNet ViT-Tiny file under
`$VITMAE_DATA/pretrained/` (or `--weights`), else random weights of its shape (speed does not
depend on them). Batch 1 and 64, eval mode, fp32, `--threads` threads in every runtime; the
contenders are timed in turn, round after round (`common.interleave`), and the figures are
medians with per-round ratios against timm. First it checks that the five agree: the fp32
ones to 1e-3 in the logits; int8's top-1 agreement with timm is recorded, on 64 real photos
(PASCAL VOC `val_available`, through the weights' evaluation transform) when the data is
there, else on 8 noise images. `--matmul` adds a sixth contender, the fp32 export with the
blocks' linear layers as MatMul + Add on (B, N, D) instead of one Gemm on rows (the other
way to export them), to measure that choice in the same run. `--smoke` runs a 2-block 32 px
model at batch 1 and 2 for one round, to check that the script works (nothing recorded).

    PYTHONPATH=src python benchmarks/inference_runtimes.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch
from common import interleave, per_round_ratio, record, rounded, spread, use_passive_omp
from safetensors.torch import save_file

from vitmae.export.onnx import export_model
from vitmae.infer.model import open_model
from vitmae.weights.hf import common_to_hf

VIT_TINY = "pretrained/vit_tiny_patch16_224.augreg_in21k_ft_in1k.safetensors"
FULL = dict(img_size=224, patch_size=16, embed_dim=192, depth=12, num_heads=3, classes=1000,
            batches=(1, 64))
SMOKE = dict(img_size=32, patch_size=16, embed_dim=192, depth=2, num_heads=3, classes=10,
             batches=(1, 2))


def timm_model(shape: dict, weights: Path | None) -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(img_size=shape["img_size"], patch_size=shape["patch_size"],
                              embed_dim=shape["embed_dim"], depth=shape["depth"],
                              num_heads=shape["num_heads"], num_classes=shape["classes"])
    if weights is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(weights)))
    return model.eval()


def hf_model(shape: dict, state: dict, folder: Path) -> torch.nn.Module:
    """ViTForImageClassification with the weights of `state`, written in HuggingFace's
    published names and read back by `from_pretrained` (which maps them to its own)."""
    from transformers import ViTConfig, ViTForImageClassification

    D = shape["embed_dim"]
    config = ViTConfig(hidden_size=D, num_hidden_layers=shape["depth"],
                       num_attention_heads=shape["num_heads"], intermediate_size=4 * D,
                       image_size=shape["img_size"], patch_size=shape["patch_size"],
                       num_labels=shape["classes"], layer_norm_eps=1e-6)
    config.save_pretrained(folder)
    save_file(common_to_hf(state, "vit."), str(folder / "model.safetensors"))
    return ViTForImageClassification.from_pretrained(folder, attn_implementation="sdpa").eval()


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def contenders(shape: dict, weights: Path | None, tmp: Path, threads: int,
               matmul: bool = False) -> dict:
    """name -> f(x (B, 3, S, S)) -> (B, K) logits, all with the same weights; `matmul` adds
    the fp32 export without Gemm rows."""
    ref = timm_model(shape, weights)
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    path = tmp / "vit.safetensors"
    save_file(state, str(path), metadata={"mean": "0.5,0.5,0.5", "std": "0.5,0.5,0.5"})
    vitmae = open_model(path, log=lambda _: None)
    quiet = dict(log=lambda _: None)
    fp32 = ort_session(export_model(vitmae, tmp / "fp32.onnx", **quiet), threads)
    int8 = ort_session(export_model(vitmae, tmp / "int8.onnx", int8=True, **quiet), threads)
    hf = hf_model(shape, state, tmp / "hf")

    def session(s):
        return lambda x: torch.from_numpy(s.run(None, {"pixel_values": x.numpy()})[0])

    models = {"vitmae": vitmae.module, "ort_fp32": session(fp32), "ort_int8": session(int8),
              "timm": ref, "hf": lambda x: hf(pixel_values=x).logits}
    if matmul:
        path = export_model(vitmae, tmp / "fp32_matmul.onnx", gemm=False, **quiet)
        models["ort_fp32_matmul"] = session(ort_session(path, threads))
    return models


def check_agreement(models: dict, x: torch.Tensor) -> dict:
    """The fp32 runtimes' largest logit difference from timm, and int8's top-1 agreement."""
    with torch.inference_mode():
        out = {name: f(x) for name, f in models.items()}
    ref = out["timm"]
    diffs = {f"{n}_max_abs_diff": (o - ref).abs().max().item() for n, o in out.items()
             if n not in ("timm", "ort_int8")}
    for name, d in diffs.items():
        if d > 1e-3:
            raise SystemExit(f"{name} = {d:.3g}: the runtimes do not compute the same model")
    top1 = (out["ort_int8"].argmax(1) == ref.argmax(1)).float().mean().item()
    return {**diffs, "int8_top1_agreement": top1}


def voc_photos(data: Path, weights: Path, n: int) -> torch.Tensor | None:
    """The first `n` PASCAL VOC `val_available` photos under the data folder (n, 3, S, S)
    through the weights' evaluation transform, or None when they are not there."""
    voc = data / "VOCdevkit" / "VOC2012"
    listing = voc / "ImageSets" / "Segmentation" / "val_available.txt"
    if not listing.is_file():
        return None
    pre = open_model(weights, log=lambda _: None).preprocess
    stems = listing.read_text().split()[:n]
    return torch.stack([pre(pre.read(voc / "JPEGImages" / f"{s}.jpg")) for s in stems])


def timed(f, x: torch.Tensor, calls: int):
    def run():
        with torch.inference_mode():
            for _ in range(calls):
                f(x)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=16, help="images per timed call at batch 1")
    ap.add_argument("--weights", help=f"timm ViT-Tiny/16 file (default: $VITMAE_DATA/{VIT_TINY})")
    ap.add_argument("--matmul", action="store_true",
                    help="also time the fp32 export with MatMul + Add instead of Gemm")
    ap.add_argument("--smoke", action="store_true", help="a tiny model, one round, no record")
    args = ap.parse_args()
    use_passive_omp()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = SMOKE if args.smoke else FULL
    data = Path(os.environ.get("VITMAE_DATA", "data"))
    weights = Path(args.weights) if args.weights else data / VIT_TINY
    weights = weights if weights.is_file() and not args.smoke else None
    result: dict = {"bench": "inference_runtimes", "weights": weights.name if weights else "random",
                    "img_size": shape["img_size"], "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        models = contenders(shape, weights, Path(tmp), args.threads, args.matmul)
        S = shape["img_size"]
        photos = voc_photos(data, weights, 64) if weights else None
        result["agreement_images"] = "voc_val_64" if photos is not None else "noise_8"
        result |= check_agreement(models, photos if photos is not None
                                  else torch.randn(8, 3, S, S).clamp(-1, 1))
        for B in shape["batches"]:
            x = torch.randn(B, 3, S, S).clamp(-1, 1)  # (B, 3, S, S), normalized range
            calls = max(1, args.images // B)
            steps = {name: timed(f, x, calls) for name, f in models.items()}
            times = interleave(steps, rounds=1 if args.smoke else args.rounds,
                               warmup=0 if args.smoke else 1)
            for name, ts in times.items():
                result[f"{name}_b{B}_img_s"] = calls * B / statistics.median(ts)
                if name != "timm":
                    ratio = spread(per_round_ratio(ts, times["timm"]))
                    result[f"{name}_b{B}_vs_timm"] = ratio["median"]
                    result[f"{name}_b{B}_vs_timm_p10"] = ratio["p10"]
                    result[f"{name}_b{B}_vs_timm_p90"] = ratio["p90"]
    if args.smoke:
        print(rounded(result))
    else:
        record(rounded(result), packages=("timm", "transformers", "onnxruntime", "onnx"))


if __name__ == "__main__":
    main()

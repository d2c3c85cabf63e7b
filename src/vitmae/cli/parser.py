"""The arguments of the `vitmae` command: one subparser per verb and its flags
(`vitmae.cli.commands` dispatches them)."""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    """The `vitmae` command's parser: one subcommand per verb, each with its flags."""
    ap = argparse.ArgumentParser(prog="vitmae", description="MAE pretraining and fine-tuning "
                                 "of Vision Transformers.")
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error "
                    "that is the user's to fix, too")
    sub = ap.add_subparsers(dest="command", required=True)
    helps = {"pretrain": "MAE pretraining", "finetune": "fine-tune (or train from scratch) "
             "for classify / segment / multilabel", "evaluate": "metrics of a fine-tuned "
             "checkpoint; last line is JSON", "visualize": "MAE reconstruction or segmentation "
             "picture", "config": "print the resolved config", "check-data": "read every item of "
             "the train and evaluation splits once and report bad files, bad masks, classes "
             "and duplicates; exit 1 if anything is wrong", "demo": "pretrain, fine-tune, "
             "evaluate and visualize on the built-in digits data", "robustness": "metric of "
             "a fine-tuned checkpoint on clean, corrupted (15 corruptions x 5 severities) and "
             "attacked test images; last line is JSON"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("-c", "--config", help="preset YAML file or built-in preset name")
        p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
        if name in ("pretrain", "finetune"):
            p.add_argument("--resume", metavar="RUN_DIR", help="continue this run folder from "
                           "its newest good checkpoint")
        if name in ("evaluate", "visualize", "robustness"):
            p.add_argument("--checkpoint", required=True, metavar="PATH",
                           help="run folder, ckpt-* folder or .safetensors file")
        if name == "visualize":
            p.add_argument("-o", "--out", help="PNG path (default: <run>/visualize.png)")
            p.add_argument("--attention", action="store_true", help="attention maps (rollout "
                           "and the last block's class-token attention per head) instead")
            p.add_argument("--images", nargs="+", metavar="PATH", help="--attention: image "
                           "files, folders or globs (default: the run's evaluation split)")
        if name == "check-data":
            p.add_argument("--workers", type=int, metavar="N", help="processes that read the "
                           "files (default: the CPU count, at most 8; 0: this process)")
        if name == "robustness":
            _robustness_flags(p)
        if name == "evaluate":
            p.add_argument("--save-predictions", metavar="DIR", help="segmentation: also write "
                           "each test prediction to DIR as a VOC palette PNG (<id>.png)")
    _use_parsers(sub)
    text = "one self-contained HTML page of runs: curves, pictures, metrics, config"
    p = sub.add_parser("report", help=text, description=text)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder, or a folder of run "
                   "folders (a demo's); several runs of one stage are overlaid")
    p.add_argument("-o", "--out", metavar="FILE.html", help="default: report.html in the first RUN")
    for p in sub.choices.values():  # also after the command; SUPPRESS keeps an earlier one
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error that is the user's to fix, too")
    return ap


def _robustness_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corruptions", default="all", help="comma-separated names, 'all' (the 15 "
                   "of CIFAR-10-C / ImageNet-C) or 'none'")
    p.add_argument("--severities", default="1,2,3,4,5", help="comma-separated, 1 to 5")
    p.add_argument("--attacks", help="comma-separated: fgsm, pgd, apgd (classification), "
                   "segpgd (segmentation), or 'none' (default: the task's)")
    p.add_argument("--eps", default="8", help="comma-separated L-inf radii in 1/255 pixel units")
    p.add_argument("--steps", type=int, default=20, help="PGD and SegPGD iterations")
    p.add_argument("--attack-size", type=int, metavar="S", help="perturb an S x S grid "
                   "resized onto the input: the stored image's threat model (CIFAR-10: 32); "
                   "default: the input's pixels")
    p.add_argument("--subset", type=int, metavar="N", help="a fixed class-balanced subset of "
                   "N test items (default: all)")
    p.add_argument("--seed", type=int, default=0, help="of the corruptions and attack starts")


def _preprocess_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="run folder, ckpt-* "
                   "folder, weights file (timm, MAE, HuggingFace) or, for predict, an .onnx file")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, folders (searched "
                   "recursively) or glob patterns")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--mean", type=float, nargs="+", help="normalisation mean per channel "
                   "(default: the checkpoint's)")
    p.add_argument("--std", type=float, nargs="+", help="normalisation std per channel")
    p.add_argument("--crop-pct", type=float, help="resize the shorter side to size / PCT and "
                   "take the centre crop (default: the checkpoint's evaluation transform; "
                   "0.875 for a weights file)")


def _use_parsers(sub) -> None:
    """The subcommands that use a trained model on new images."""
    p = sub.add_parser("predict", help="classify or segment image files; one JSON line each")
    _preprocess_flags(p)
    p.add_argument("-o", "--out", metavar="DIR", help="segmentation: folder for the palette PNGs "
                   "and overlays")
    p.add_argument("--topk", type=int, default=5, help="classes per image (classification)")
    p.add_argument("--threshold", type=float, default=0.5, help="multi-label: list the "
                   "labels scoring at least this")
    p = sub.add_parser("embed", help="encoder features of image files into one .npy (and a "
                       ".csv of their paths)")
    _preprocess_flags(p)
    p.add_argument("-o", "--out", required=True, metavar="FEATS.npy")
    p.add_argument("--pool", choices=("cls", "mean"), help="class token or mean of the patch "
                   "tokens (default: the model's own pooling)")
    p = sub.add_parser("export", help="write a run's model as ONNX (or its weights as timm, "
                       "HuggingFace or MAE files)")
    p.add_argument("run", metavar="RUN", help="run folder, ckpt-* folder or weights file")
    p.add_argument("--to", required=True, choices=("onnx", "timm", "hf", "mae"))
    p.add_argument("out", metavar="OUT", help="the file (or folder) to write")
    p.add_argument("--int8", action="store_true", help="onnx: 8-bit dynamic quantisation")
    p.add_argument("--portable", action="store_true",
                   help="onnx: standard operators only (any ONNX runtime), instead of "
                        "onnxruntime's fused attention node")

"""Command line: parses arguments and calls the library; nothing else happens here.

    vitmae pretrain  -c PRESET [key.sub=value ...] [--resume RUN_DIR]
    vitmae finetune  -c PRESET [key.sub=value ...] [--resume RUN_DIR]
    vitmae evaluate  --checkpoint RUN_OR_CKPT [-c PRESET] [key.sub=value ...]
    vitmae visualize --checkpoint RUN_OR_CKPT [-c PRESET] [--out PNG] [key.sub=value ...]
    vitmae visualize --checkpoint RUN_OR_WEIGHTS --attention [--images PATH ...] [--out PNG]
    vitmae predict   --checkpoint RUN_WEIGHTS_OR_ONNX PATH ... [--out DIR] [--topk K]
    vitmae embed     --checkpoint RUN_OR_WEIGHTS PATH ... --out FEATS.npy [--pool cls|mean]
    vitmae export    RUN --to onnx|timm|hf|mae OUT [--int8]
    vitmae config    -c PRESET [key.sub=value ...]
    vitmae export    RUN_OR_CKPT --to timm|hf|mae OUT
    vitmae check-data -c PRESET [key.sub=value ...] [--workers N]
    vitmae demo      [key.sub=value ...]
    vitmae report    RUN [RUN ...] [--out FILE.html]

PRESET is a YAML file or the name of a built-in preset (`vitmae config -c digits`). With
--resume or --checkpoint and no -c, the run folder's own config.yaml is used.

A mistake the user can fix (`vitmae.errors.UserError`, or a path that does not exist) ends
with one line `vitmae: error: ...` and exit 2 (`--debug`: with its traceback too); any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import yaml

from vitmae.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    load_config,
    to_dict,
    validate,
)
from vitmae.errors import UsageError, UserError


def _parser() -> argparse.ArgumentParser:
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
    p.add_argument("--subset", type=int, metavar="N", help="a fixed class-balanced subset of "
                   "N test items (default: all)")
    p.add_argument("--seed", type=int, default=0, help="of the corruptions and attack starts")


def _robustness_options(args):
    from vitmae.robust.evaluation import Options

    def names(text: str, every: tuple) -> tuple:
        return () if text == "none" else every if text == "all" else tuple(text.split(","))

    try:
        from vitmae.robust.corruptions import CORRUPTIONS

        return Options(corruptions=names(args.corruptions, CORRUPTIONS),
                       severities=tuple(int(s) for s in args.severities.split(",")),
                       attacks=None if args.attacks is None else names(args.attacks, ()),
                       eps=tuple(float(e) / 255 for e in args.eps.split(",")),
                       steps=args.steps, subset=args.subset, seed=args.seed)
    except ValueError as e:
        raise UsageError(f"vitmae robustness: --severities and --eps take comma-separated "
                         f"numbers ({e})") from None


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


def _config(args) -> object:
    """-c preset, else the config.yaml of the run folder named by --resume/--checkpoint."""
    folder = getattr(args, "resume", None) or getattr(args, "checkpoint", None)
    if args.command == "demo":
        return load_config(args.config or "digits", args.overrides)
    if args.config or folder is None:
        return load_config(args.config, args.overrides)
    from vitmae.runs.folder import run_dir_of

    run = run_dir_of(folder)
    if run is None:
        raise ConfigError(f"{folder}: no config.yaml in this folder or above it; pass -c PRESET")
    cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    apply_overrides(cfg, args.overrides)
    validate(cfg)
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from vitmae.distributed import say
    from vitmae.train.engine import DivergenceError, Interrupted

    try:
        if args.command in ("predict", "embed", "export") or (
                args.command == "visualize" and args.attention):
            return _use(args)
        if args.command == "report":
            from vitmae.viz.report import write_report

            print(f"wrote {write_report(args.runs, args.out)}")
            return 0
        cfg = _config(args)
        if cfg.run.keep_freed_memory and args.command in ("pretrain", "finetune", "demo"):
            # process-wide (glibc's malloc): set by the command that owns this process
            from vitmae.train.allocator import keep_freed_memory

            keep_freed_memory()
        if args.command == "config":
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        elif args.command == "pretrain":
            from vitmae.train.runner import run_pretrain

            say(f"run folder: {run_pretrain(cfg, resume=args.resume)}")
        elif args.command == "finetune":
            from vitmae.train.runner import run_finetune

            say(f"run folder: {run_finetune(cfg, resume=args.resume)}")
        elif args.command == "evaluate":
            from vitmae.train.evaluation import run_evaluate

            print(json.dumps(run_evaluate(cfg, args.checkpoint,
                                          predictions_dir=args.save_predictions)))
        elif args.command == "visualize":
            from vitmae.runs.folder import run_dir_of
            from vitmae.viz.reconstruction import run_visualize

            out = args.out or (run_dir_of(args.checkpoint) or Path(".")) / "visualize.png"
            print(f"wrote {run_visualize(cfg, args.checkpoint, out)}")
        elif args.command == "robustness":
            from vitmae.robust.evaluation import run_robustness
            from vitmae.robust.table import robustness_table

            summary, records = run_robustness(cfg, args.checkpoint, _robustness_options(args))
            print(robustness_table(records, summary))
            print(json.dumps(summary))
        elif args.command == "check-data":
            from vitmae.data.audit import run_check_data

            return run_check_data(cfg, args.workers)
        elif args.command == "demo":
            from vitmae.cli.demo import run_demo

            print(json.dumps(run_demo(cfg)))
    except Interrupted as e:
        print(f"vitmae: {e}", file=sys.stderr)
        return 128 + int(e.signum)
    except DivergenceError as e:
        print(f"vitmae: diverged: {e}", file=sys.stderr)
        return 3
    except (UserError, FileNotFoundError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"vitmae: error: {e}", file=sys.stderr)
        return 2
    return 0


def _use(args) -> int:
    """predict, embed, export and attention maps: 1 when some images could not be read."""
    def log(msg: str) -> None:  # stdout carries the results
        print(msg, file=sys.stderr)

    if args.command == "export":
        return _export(args, log)
    from vitmae.infer.model import open_model

    if args.command == "visualize":
        from vitmae.runs.folder import run_dir_of
        from vitmae.viz.attention import run_attention_visualize

        run = run_dir_of(args.checkpoint)
        cfg = _config(args) if run is not None and not args.images else None
        out = args.out or (run or Path(".")) / "attention.png"
        model = open_model(args.checkpoint, log=log)
        print(f"wrote {run_attention_visualize(model, out, args.images, cfg)}")
        return 0
    from vitmae.infer.image_files import list_images, summary

    model = open_model(args.checkpoint, args.mean, args.std, args.crop_pct, log=log)
    volumes = model.preprocess.volumes
    paths = list_images(args.paths, volumes)
    if args.command == "predict":
        from vitmae.infer.predict import run_predict

        done, failed = run_predict(model, paths, args.out, args.topk, args.batch_size,
                                   args.threshold)
    else:
        from vitmae.infer.embed import run_embed

        done, failed = run_embed(model, paths, args.out, args.pool, args.batch_size)
        log(f"wrote {args.out} and {Path(args.out).with_suffix('.csv')}")
    log(summary(args.command, done, failed, "volumes" if volumes else "images"))
    return 1 if failed else 0


def _export(args, log) -> int:
    """--to onnx: vitmae.export.onnx; timm, hf, mae: vitmae.weights.export."""
    if args.to == "onnx":
        from vitmae.export.onnx import export_onnx

        export_onnx(args.run, args.out, int8=args.int8, log=log, portable=args.portable)
        return 0
    if args.int8 or args.portable:
        raise UsageError(f"{'--int8' if args.int8 else '--portable'} is for --to onnx only")
    from vitmae.weights.export import export_run

    print(f"wrote {export_run(args.run, args.to, args.out) or args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

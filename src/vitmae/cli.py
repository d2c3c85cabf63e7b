"""Command line: parses arguments and calls the library; nothing else happens here.

    vitmae pretrain  -c PRESET [key.sub=value ...] [--resume RUN_DIR]
    vitmae finetune  -c PRESET [key.sub=value ...] [--resume RUN_DIR]
    vitmae evaluate  --checkpoint RUN_OR_CKPT [-c PRESET] [key.sub=value ...]
    vitmae visualize --checkpoint RUN_OR_CKPT [-c PRESET] [--out PNG] [key.sub=value ...]
    vitmae config    -c PRESET [key.sub=value ...]
    vitmae export    RUN_OR_CKPT --to timm|hf|mae OUT
    vitmae check-data -c PRESET [key.sub=value ...] [--workers N]
    vitmae demo      [key.sub=value ...]
    vitmae report    RUN [RUN ...] [--out FILE.html]

PRESET is a YAML file or the name of a built-in preset (`vitmae config -c digits`). With
--resume or --checkpoint and no -c, the run folder's own config.yaml is used.
"""

from __future__ import annotations

import argparse
import json
import sys
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


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vitmae", description="MAE pretraining and fine-tuning "
                                 "of Vision Transformers.")
    sub = ap.add_subparsers(dest="command", required=True)
    helps = {"pretrain": "MAE pretraining", "finetune": "fine-tune (or train from scratch) "
             "for classify / segment / multilabel", "evaluate": "metrics of a fine-tuned "
             "checkpoint; last line is JSON", "visualize": "MAE reconstruction or segmentation "
             "picture", "config": "print the resolved config", "check-data": "read every item of "
             "the train and evaluation splits once and report bad files, bad masks, classes "
             "and duplicates; exit 1 if anything is wrong", "demo": "pretrain, fine-tune, "
             "evaluate and visualize on the built-in digits data"}
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("-c", "--config", help="preset YAML file or built-in preset name")
        p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
        if name in ("pretrain", "finetune"):
            p.add_argument("--resume", metavar="RUN_DIR", help="continue this run folder from "
                           "its newest good checkpoint")
        if name in ("evaluate", "visualize"):
            p.add_argument("--checkpoint", required=True, metavar="PATH",
                           help="run folder, ckpt-* folder or .safetensors file")
        if name == "visualize":
            p.add_argument("--out", help="PNG path (default: <run>/visualize.png)")
        if name == "check-data":
            p.add_argument("--workers", type=int, metavar="N", help="processes that read the "
                           "files (default: the CPU count, at most 8; 0: this process)")
        if name == "evaluate":
            p.add_argument("--save-predictions", metavar="DIR", help="segmentation: also write "
                           "each test prediction to DIR as a VOC palette PNG (<id>.png)")
    p = sub.add_parser("export", help="write a run's weights for timm, HuggingFace or the "
                       "official MAE code", description="write a run's weights for timm, "
                       "HuggingFace or the official MAE code")
    p.add_argument("run", metavar="RUN_OR_CKPT", help="run folder or ckpt-* folder")
    p.add_argument("--to", required=True, choices=("timm", "hf", "mae"), help="format")
    p.add_argument("out", metavar="OUT", help="a .safetensors file (timm), a folder (hf) or a "
                   ".pth file (mae)")
    text = "one self-contained HTML page of runs: curves, pictures, metrics, config"
    p = sub.add_parser("report", help=text, description=text)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder, or a folder of run "
                   "folders (a demo's); several runs of one stage are overlaid")
    p.add_argument("--out", metavar="FILE.html", help="default: report.html in the first RUN")
    return ap


def _config(args) -> object:
    """-c preset, else the config.yaml of the run folder named by --resume/--checkpoint."""
    folder = getattr(args, "resume", None) or getattr(args, "checkpoint", None)
    if args.command == "demo":
        return load_config(args.config or "digits", args.overrides)
    if args.config or folder is None:
        return load_config(args.config, args.overrides)
    from vitmae.evaluation import run_dir_of

    run = run_dir_of(folder)
    if run is None:
        raise ConfigError(f"{folder}: no config.yaml in this folder or above it; pass -c PRESET")
    cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    apply_overrides(cfg, args.overrides)
    validate(cfg)
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from vitmae.checkpoint import CheckpointError
    from vitmae.distributed import say
    from vitmae.engine import DivergenceError, Interrupted

    try:
        if args.command == "export":
            from vitmae.weights.export import export_run

            print(f"wrote {export_run(args.run, args.to, args.out)}")
            return 0
        if args.command == "report":
            from vitmae.report import write_report

            print(f"wrote {write_report(args.runs, args.out)}")
            return 0
        cfg = _config(args)
        if args.command == "config":
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        elif args.command == "pretrain":
            from vitmae.runner import run_pretrain

            say(f"run folder: {run_pretrain(cfg, resume=args.resume)}")
        elif args.command == "finetune":
            from vitmae.runner import run_finetune

            say(f"run folder: {run_finetune(cfg, resume=args.resume)}")
        elif args.command == "evaluate":
            from vitmae.evaluation import run_evaluate

            print(json.dumps(run_evaluate(cfg, args.checkpoint,
                                          predictions_dir=args.save_predictions)))
        elif args.command == "visualize":
            from vitmae.evaluation import run_dir_of
            from vitmae.visualize import run_visualize

            out = args.out or (run_dir_of(args.checkpoint) or Path(".")) / "visualize.png"
            print(f"wrote {run_visualize(cfg, args.checkpoint, out)}")
        elif args.command == "check-data":
            from vitmae.check_data import run_check_data

            return run_check_data(cfg, args.workers)
        elif args.command == "demo":
            from vitmae.demo import run_demo

            print(json.dumps(run_demo(cfg)))
    except Interrupted as e:
        print(f"vitmae: {e}", file=sys.stderr)
        return 128 + int(e.signum)
    except DivergenceError as e:
        print(f"vitmae: diverged: {e}", file=sys.stderr)
        return 3
    except (ConfigError, CheckpointError, FileNotFoundError, ValueError, OSError) as e:
        print(f"vitmae: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

import json
import sys
import traceback
from pathlib import Path

import yaml

from vitmae.cli.parser import build_parser
from vitmae.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    load_config,
    to_dict,
    validate,
)
from vitmae.errors import UsageError, UserError


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
                       steps=args.steps, subset=args.subset, seed=args.seed,
                       attack_size=args.attack_size)
    except ValueError as e:
        raise UsageError(f"vitmae robustness: --severities and --eps take comma-separated "
                         f"numbers ({e})") from None


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
    args = build_parser().parse_args(argv)
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

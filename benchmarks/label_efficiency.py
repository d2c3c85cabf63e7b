"""Label efficiency: CIFAR-10 top-1 against the fraction of labelled training images, for a
ViT from scratch, from MAE pretraining on CIFAR-10, and from ImageNet-21k weights (and, on
request: `--inits imagenet21k+mae`, the ImageNet weights after MAE on CIFAR-10, the founding
workflow; `--inits resnet18`, the CNN peer, a ResNet-18 from scratch).

For each fraction in --fractions and each start in --inits, one `vitmae finetune` run (in
this process, through `vitmae.cli.commands`, so each is exactly the recorded command) with
`data.labels_fraction` set: the same seeded, class-balanced images for every start
(`vitmae.data.labelled`; smaller fractions are nested in larger ones).

    VITMAE_DATA=... PYTHONPATH=src python benchmarks/label_efficiency.py \\
        --mae RUN --weights vit_tiny_patch16_224.augreg_in21k_ft_in1k.safetensors

Starts and presets: scratch `--preset-scratch` (cifar10), mae `--preset-mae` (cifar10) with
finetune.pretrained=--mae, imagenet21k `--preset-imagenet` (cifar10_vit_tiny) with
finetune.pretrained=--weights, imagenet21k+mae `--preset-imagenet` with
finetune.pretrained=--imagenet-mae (a `vitmae pretrain -c cifar10_vit_tiny pretrain.init=FILE`
run), resnet18 `--preset-cnn` (cifar10_resnet18). Overrides after
the options apply to every run, or with an `INIT:` prefix to one start
(`imagenet21k:run.shards=1`).

Budget: every run gets about --steps optimizer steps, whatever its fraction: the epoch count
is round(steps / steps per epoch) (at least 1), the warmup keeps the preset's share of the
schedule, and only the last epoch is evaluated. A fraction whose images do not fill one batch
trains on batches of all of them. The default, 500 steps, is sized from the cifar10_vit_tiny
preset, whose README row records the time of its 3 epochs of 2,343 steps on 2 cores: the 9
runs of the default grid make about 9 x 500 = 4,500 steps of similar cost (batch 128 of 65
tokens for the cifar10 preset, 64 of 101 for cifar10_vit_tiny), about twice that preset's run,
plus nine evaluations of the 10,000 test images: a few hours on 2 CPU cores.

Writes the table as JSON (`<out>/label_efficiency.json`), one line per run with its command
to `results/label_efficiency.jsonl`, and the picture `docs/label_efficiency.png` (top-1
against the fraction, log x axis, one line per start) from every run in that results file
(the latest of each start and fraction), so that a study run in parts makes one picture.
`--smoke`: micro models on the built-in digits data, 2 steps per run, a 1-step MAE run made
here standing for --mae / --weights / --imagenet-mae when they are not given, everything
under --out (a check that the study runs, not a result).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import sys
from pathlib import Path

from common import shareable

ROOT = Path(__file__).resolve().parents[1]
INITS = ("scratch", "mae", "imagenet21k")  # the default grid's starts
CNN = "resnet18"  # the CNN peer from scratch
ON_REQUEST = ("imagenet21k+mae", CNN)  # starts outside the default grid
# the starts that need weights, and the option that gives them
WEIGHTS = {"mae": "mae", "imagenet21k": "weights", "imagenet21k+mae": "imagenet_mae"}
# --smoke: every run on the digits data with the micro ViT, a few images, no worker processes
SMOKE = ["data.dataset=digits", "data.img_size=16", "data.subset=64", "data.num_workers=0",
         "model.arch=vit_micro_patch4", "run.shards=1", "run.log_interval=1"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fractions", default="0.01,0.1,1.0")
    ap.add_argument("--inits", default=",".join(INITS))
    ap.add_argument("--mae", metavar="RUN", help="MAE pretraining run (init mae)")
    ap.add_argument("--weights", metavar="FILE", help="ImageNet-21k weights (init imagenet21k)")
    ap.add_argument("--imagenet-mae", metavar="RUN",
                    help="MAE pretraining run from the ImageNet-21k weights (init imagenet21k+mae)")
    ap.add_argument("--preset-scratch", default="cifar10")
    ap.add_argument("--preset-mae", default="cifar10")
    ap.add_argument("--preset-imagenet", default="cifar10_vit_tiny")
    ap.add_argument("--preset-cnn", default="cifar10_resnet18")
    ap.add_argument("--steps", type=int, default=500, help="optimizer steps per run")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "label_efficiency",
                    help="folder of the runs and the JSON table")
    ap.add_argument("--results", type=Path, default=ROOT / "results" / "label_efficiency.jsonl")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "label_efficiency.png")
    ap.add_argument("--smoke", action="store_true", help="micro models, 2 steps, into --out")
    ap.add_argument("overrides", nargs="*", help="key=value for every run, INIT:key=value for one")
    args = ap.parse_args(argv)
    args.fractions = [float(f) for f in args.fractions.split(",")]
    args.inits = args.inits.split(",")
    unknown = set(args.inits) - {*INITS, *ON_REQUEST}
    if unknown:
        ap.error(f"--inits: unknown {sorted(unknown)} (known: {', '.join([*INITS, *ON_REQUEST])})")
    if args.smoke:
        args.steps = 2
        args.results, args.figure = args.out / "label_efficiency.jsonl", args.out / "plot.png"
    return args


def cli(argv: list[str]) -> tuple[int, str]:
    """`vitmae ARGV` in this process -> (exit status, its stdout)."""
    from vitmae.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue()


def smoke_mae(out: Path) -> str:
    """A 1-step micro MAE run on the digits data: the --mae and --weights of --smoke."""
    argv = ["pretrain", "-c", "digits", *SMOKE, "data.batch_size=64", "pretrain.optim.epochs=1",
            "pretrain.knn_every=0", "pretrain.recon_every=0", f"run.output_dir={out}",
            "run.name=mae"]
    rc, text = cli(argv)
    if rc:
        raise SystemExit(f"the smoke MAE run failed:\n{text}")
    return str(out / "mae")


def base_args(init: str, args: argparse.Namespace) -> tuple[str, list[str]]:
    """(preset, overrides) of one start, before the fraction and the schedule."""
    preset = {"scratch": args.preset_scratch, "mae": args.preset_mae,
              "imagenet21k": args.preset_imagenet, "imagenet21k+mae": args.preset_imagenet,
              CNN: args.preset_cnn}[init]
    weights = getattr(args, WEIGHTS[init]) if init in WEIGHTS else None
    if init in WEIGHTS and weights is None:
        raise SystemExit(f"--inits {init}: needs --{WEIGHTS[init].replace('_', '-')}")
    # --smoke: the CNN keeps its own architecture (ResNet-18 is small enough at 16 px)
    over = [o for o in SMOKE if init != CNN or not o.startswith("model.")] if args.smoke else []
    over.append(f"finetune.pretrained={weights}" if weights else "finetune.pretrained=null")
    for text in args.overrides:
        scope, _, rest = text.partition(":") if ":" in text.split("=")[0] else ("", "", text)
        if scope in ("", init):
            over.append(rest)
    return preset, over


def schedule(preset: str, over: list[str], fraction: float, steps: int) -> list[str]:
    """The overrides that give about `steps` optimizer steps on `fraction` of the images."""
    from vitmae.config import load_config
    from vitmae.data import build_dataset

    cfg = load_config(preset, [*over, f"data.labels_fraction={fraction}"])
    n = len(build_dataset(cfg.data, cfg.data.train_split, train=True, labelled=True))
    o = cfg.finetune.optim
    batch = min(cfg.data.batch_size, n)  # a fraction smaller than a batch: one batch of all
    per_epoch = max(1, n // (batch * o.accum_iter))
    epochs = max(1, round(steps / per_epoch))
    warmup = o.warmup_epochs / o.epochs * epochs  # the preset's share of the schedule
    return [f"data.labels_fraction={fraction}", f"data.batch_size={batch}",
            f"finetune.optim.epochs={epochs}", f"finetune.optim.warmup_epochs={warmup:.4g}",
            f"run.eval_interval={epochs}"]


def final_top1(run: Path) -> float | None:
    """The top-1 of the run's last evaluation (its last epoch)."""
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r.get("split") == "val"]
    return val[-1]["top1"] if val else None


def latest(results: Path) -> list[dict]:
    """The results file's runs, the last one of each start and fraction, in first-run order."""
    cells: dict[tuple, dict] = {}
    for line in results.read_text().splitlines():
        row = json.loads(line)
        cells[row["init"], row["fraction"]] = row
    return list(cells.values())


def draw(table: list[dict], path: Path) -> None:
    """Top-1 against the labelled fraction (log x), one line per start."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 3.5))
    ax = fig.subplots()
    for init in dict.fromkeys(r["init"] for r in table):
        rows = sorted((r["fraction"], r["top1"]) for r in table
                      if r["init"] == init and r["top1"] is not None)
        if rows:
            ax.plot(*zip(*rows, strict=True), marker="o", label=init)
    ax.set_xscale("log")
    ax.set_xlabel("labelled fraction of the training images")
    ax.set_ylabel("top-1")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5))  # outside: no point hidden
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.mae = args.mae or smoke_mae(args.out)
        args.weights = args.weights or args.mae
        args.imagenet_mae = args.imagenet_mae or args.mae
    table = []
    for init in args.inits:
        preset, over = base_args(init, args)
        for fraction in args.fractions:
            name = f"{init}-{fraction:g}"
            cmd = ["finetune", "-c", preset, *over, *schedule(preset, over, fraction, args.steps),
                   f"run.output_dir={args.out}", f"run.name={name}"]
            rc, text = cli(cmd)
            run = args.out / name
            if run.is_dir():  # its log (the labelled fraction and image count) beside it
                (run / "finetune.log").write_text(text)
            top1 = final_top1(run) if rc == 0 else None
            row = {"init": init, "fraction": fraction, "top1": top1, "rc": rc,
                   "run": shareable(str(run))}
            table.append(row)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            command = ["vitmae", *(shareable(str(c)) for c in cmd)]
            date = datetime.datetime.now().isoformat(timespec="seconds")
            with open(args.results, "a") as f:
                f.write(json.dumps({**row, "command": command, "date": date}) + "\n")
            print(json.dumps(row), flush=True)
            if rc:
                print(text[-2000:], file=sys.stderr)
    (args.out / "label_efficiency.json").write_text(json.dumps(table, indent=1))
    draw(latest(args.results), args.figure)
    print(f"wrote {args.out / 'label_efficiency.json'} and {args.figure}")
    return table


if __name__ == "__main__":
    main()

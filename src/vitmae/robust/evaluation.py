"""`run_robustness`: a fine-tuned run's metric on its clean test split, under each common
corruption and severity, and under attack (`vitmae robustness`).

As RobustBench measures it: the corruptions of CIFAR-10-C / ImageNet-C at severities 1-5 on the
images at their stored size (`vitmae.robust.corrupted`), their mean as the headline, and L-inf
attacks in pixel units with the normalisation inside the attacked function (FGSM, PGD with a
random start, step eps/4 as in Rice et al. 2020; SegPGD for segmentation; APGD-CE from
torchattacks as the guard against gradient masking). A fixed, class-balanced subset of the test
split (`subset`) keeps the cost in hand; its size is in every record. The records go to
`<run>/robustness/records.jsonl` (one line per measurement) and `summary.json`, the pictures
(`vitmae.robust.figures`) to `severity.png` and `examples.png` beside them.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Subset

from vitmae.config import Config
from vitmae.data import build_dataset
from vitmae.data.labelled import class_targets, labelled_indices
from vitmae.errors import ConfigError, UsageError
from vitmae.models import load_finetuned
from vitmae.robust.attacked import ATTACKS, attacked_metrics
from vitmae.robust.corrupted import CorruptedSet
from vitmae.robust.corruptions import CORRUPTIONS, SEVERITIES
from vitmae.robust.figures import save_robustness_figures
from vitmae.runs.checkpoint import read_weights
from vitmae.runs.folder import run_dir_of
from vitmae.tasks import build_task
from vitmae.train.engine import run_evaluator
from vitmae.train.runner import setup
from vitmae.weights.keys import is_mae

METRIC = {"classify": "top1", "multilabel": "map", "segment": "miou"}


@dataclass
class Options:
    corruptions: tuple[str, ...] = CORRUPTIONS
    severities: tuple[int, ...] = SEVERITIES
    attacks: tuple[str, ...] | None = None  # None: the task's (ATTACKS)
    eps: tuple[float, ...] = (8 / 255,)  # L-inf radius in pixel units
    steps: int = 20  # of PGD and SegPGD (APGD: its own 100)
    # the attacks' grid: the perturbation at attack_size x attack_size resized onto the input
    # (the stored image's threat model: 32 for CIFAR-10); None: the input's own pixels
    attack_size: int | None = None
    subset: int | None = None  # a fixed class-balanced subset of the test split; None: all
    seed: int = 0


def fixed_subset(ds, n: int | None, seed: int):
    """The first-class-balanced `n` items of `ds` (classification: labelled_indices' fixed
    per-class prefix), else its first n; all of it when n is None."""
    if n is None or n >= len(ds):
        return ds
    try:
        idx = labelled_indices(class_targets(ds), n / len(ds), seed)
    except ConfigError:  # masks or label vectors: no class per item
        idx = np.arange(n)
    return Subset(ds, idx.tolist())


def run_robustness(cfg: Config, checkpoint: str | Path, opts: Options,
                   log=print) -> tuple[dict, list[dict]]:
    """Measure and record; -> (the summary: clean, corruption mean, per-severity and
    per-corruption means, each attack; the records). Each record is logged as it comes."""
    if cfg.model.spatial_dims == 3:
        raise UsageError(f"{checkpoint}: a run on volumes; the corruptions and attacks here "
                         f"are of 2-D images")
    state = read_weights(checkpoint)
    if is_mae(state):
        raise UsageError(f"{checkpoint}: an MAE pretraining run has no {cfg.task} head; "
                         f"fine-tune it first")
    if opts.attack_size is not None and not 1 <= opts.attack_size <= cfg.data.img_size:
        raise UsageError(f"--attack-size: a size in pixels in [1, data.img_size="
                         f"{cfg.data.img_size}], got {opts.attack_size}")
    device = setup(cfg)
    full = build_dataset(cfg.data, cfg.data.val_split, train=False)
    ds = fixed_subset(full, opts.subset, opts.seed)
    model = load_finetuned(cfg, state, full.in_chans, full.num_classes).to(device).eval()
    task = build_task(cfg.task, num_classes=full.num_classes,
                      classes=getattr(full, "classes", None))
    key, B = METRIC[cfg.task], cfg.data.batch_size
    out = (run_dir_of(checkpoint) or Path(cfg.run.output_dir)) / "robustness"
    out.mkdir(parents=True, exist_ok=True)
    (out / "records.jsonl").unlink(missing_ok=True)  # this measurement's records only
    records: list[dict] = []

    def record(kind: str, metrics: dict, t0: float, **what) -> None:
        rec = {"kind": kind, **what, key: metrics[key], "n": metrics["n"],
               "seconds": round(time.perf_counter() - t0, 1)}
        records.append(rec)
        with (out / "records.jsonl").open("a") as f:
            f.write(json.dumps(rec) + "\n")
        log(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in rec.items()))

    t0 = time.perf_counter()
    record("clean", run_evaluator(model, task, ds, B, device).result(), t0)
    for name in opts.corruptions:
        for sev in opts.severities:
            t0 = time.perf_counter()
            corrupted = fixed_subset(CorruptedSet(full, name, sev, opts.seed), opts.subset,
                                    opts.seed)
            record("corruption", run_evaluator(model, task, corrupted, B, device).result(), t0,
                   corruption=name, severity=sev)
    for attack in ATTACKS[cfg.task] if opts.attacks is None else opts.attacks:
        for eps in opts.eps:
            t0 = time.perf_counter()
            metrics = attacked_metrics(model, task, cfg.task, ds, (full.mean, full.std),
                                       attack, eps, opts.steps, opts.seed, B, device,
                                       opts.attack_size)
            grid = {"size": opts.attack_size} if opts.attack_size else {}
            record("attack", metrics, t0, attack=attack, eps=eps, **grid)
    summary = summarize(records, key, opts)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for path in save_robustness_figures(out, records, key, model, cfg.task, full, ds, device,
                                        opts.seed, opts.steps, opts.attack_size):
        log(f"wrote {path}")
    return summary, records


def summarize(records: list[dict], key: str, opts: Options) -> dict:
    """Clean, the mean over every corruption record, per severity, per corruption, attacks."""
    clean = next(r[key] for r in records if r["kind"] == "clean")
    cor = [r for r in records if r["kind"] == "corruption"]
    out = {"metric": key, "n": records[0]["n"], "clean": clean, **asdict(opts)}
    if cor:
        out["corruption_mean"] = float(np.mean([r[key] for r in cor]))
        out["by_severity"] = {s: float(np.mean([r[key] for r in cor if r["severity"] == s]))
                              for s in sorted({r["severity"] for r in cor})}
        out["by_corruption"] = {c: float(np.mean([r[key] for r in cor if r["corruption"] == c]))
                                for c in dict.fromkeys(r["corruption"] for r in cor)}
    for r in records:
        if r["kind"] == "attack":
            out[f"{r['attack']}_{r['eps'] * 255:g}/255"] = r[key]
    return out

"""Benchmark 4: is data loading ever the bottleneck? Loader rate against step rate, and memory.

For MNIST, CIFAR-10 and VOC (`voc_seg`), with each preset's batch size, image size and
worker count:

* delivered: images/s that `vitmae.data.loader.make_loader` yields in a training epoch
  (shuffled, augmented), worker start-up and the first batch left out;
* consumed: images/s of the preset's MAE pretraining step (the fastest step per image, so
  the strictest test) on batches of that shape, with the preset's threads (2 if unset);
* ratio = delivered / consumed (target >= 3);
* peak memory of a short training run (`run_pretrain`, a few steps, evaluation skipped) in a
  child process: the training process's own peak RSS and its largest loader worker's
  (getrusage), and the peak of their summed RSS (polled; pages shared with the workers count
  once per process, so this is an upper bound).

Loader passes and step timings alternate, two rounds; medians are reported. VOC is the
`voc_seg` preset (photos decoded per item, never held in memory whole).

    VITMAE_DATA=<data root> PYTHONPATH=src python benchmarks/loaders.py [--only mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from common import pretrain_without_evaluation, record, rounded, sharded_step, use_passive_omp

from vitmae.config import load_config
from vitmae.data import build_dataset
from vitmae.data.loader import make_loader
from vitmae.models import build_mae
from vitmae.train.optim import build_optimizer, param_groups

PRESETS = {"voc": "voc_seg"}  # data set name -> preset, where they differ
RSS_STEPS = 3  # peak memory is reached once the optimizer state exists (first step)


def config_for(name: str, extra: list[str] = ()):
    """The preset of data set `name`, with overrides `extra`."""
    return load_config(PRESETS.get(name, name), list(extra))


def loader_img_s(dataset, batch: int, workers: int, batches: int) -> float:
    """Images/s of one training-epoch loader, after its first batch (worker start-up)."""
    it = iter(make_loader(dataset, batch, train=True, seed=0, epoch=0, num_workers=workers))
    next(it)
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            n += len(next(it)[0])
        except StopIteration:  # a small data set: its epoch ended
            break
    return n / (time.perf_counter() - t0)


def step_fn(cfg, in_chans: int, shards: int = 1):
    """One MAE pretraining step of the preset's model on a random batch of its shape (with
    `shards` > 1: as `run.shards`, the faster consumer on a few cores)."""
    model = build_mae(cfg.model, cfg.data.img_size, in_chans).train()
    o = cfg.pretrain.optim
    opt = build_optimizer(param_groups(model, o.weight_decay), o, 1e-4)
    S = cfg.data.img_size
    x = torch.randn(cfg.data.batch_size, in_chans, S, S)  # (B, C, H, W)
    if shards > 1:
        return sharded_step(model, opt, lambda m, xs: m(xs)[0], [x], shards)

    def step():
        model(x)[0].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def measure_rates(name: str, batches: int, steps: int, rounds: int, shards: int = 1) -> dict:
    cfg = config_for(name)
    torch.set_num_threads(cfg.run.threads or 2)
    d = cfg.data
    dataset = build_dataset(d, d.train_split, train=True)
    step = step_fn(cfg, dataset.in_chans, shards)
    step()  # warm-up
    delivered, consumed = [], []
    for _ in range(rounds):
        delivered.append(loader_img_s(dataset, d.batch_size, d.num_workers, batches))
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        consumed.append(steps * d.batch_size / (time.perf_counter() - t0))
    return {"loader_img_s": statistics.median(delivered),
            "step_img_s": statistics.median(consumed),
            "ratio": statistics.median(a / b for a, b in zip(delivered, consumed, strict=True)),
            "batch": d.batch_size, "workers": d.num_workers, "img_size": d.img_size,
            "arch": cfg.model.arch, "shards": shards}


def peak_memory(name: str) -> dict:
    """Peak RSS of a short training run of preset `name` in a child process (MiB)."""
    import psutil

    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "peak.json")
        child = subprocess.Popen([sys.executable, __file__, "--child", name, "--out", tmp],
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        proc, tree_peak = psutil.Process(child.pid), 0
        while child.poll() is None:
            try:
                procs = [proc, *proc.children(recursive=True)]
                tree_peak = max(tree_peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:  # a worker ended between listing and reading
                pass
            time.sleep(0.05)
        output = child.stdout.read()
        if child.returncode != 0:
            raise SystemExit(f"loaders.py: the {name} training run failed "
                             f"(exit {child.returncode}):\n{output[-2000:]}")
        with open(report) as f:
            peaks = json.load(f)
    return {**peaks, "peak_tree_rss_mb": tree_peak / 2**20}


def run_child(name: str, out: str) -> None:
    """The short training run whose memory `peak_memory` watches; writes its own peak RSS."""
    base = config_for(name)
    n = base.data.batch_size * RSS_STEPS
    pretrain_without_evaluation(config_for(name, [f"data.subset={n}", "pretrain.optim.epochs=1",
                                                  f"run.output_dir={out}", "run.device=cpu"]))
    kib = {who: resource.getrusage(who).ru_maxrss  # KiB on Linux
           for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)}
    with open(os.path.join(out, "peak.json"), "w") as f:
        json.dump({"peak_rss_mb": kib[resource.RUSAGE_SELF] / 1024,
                   "peak_worker_rss_mb": kib[resource.RUSAGE_CHILDREN] / 1024}, f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=["mnist", "cifar10", "voc"])
    ap.add_argument("--batches", type=int, default=10, help="loader batches timed per pass")
    ap.add_argument("--steps", type=int, default=2, help="training steps timed per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--shards", type=int, default=1,
                    help="time the step as run.shards=N (the consumer on N cores)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    use_passive_omp()
    if args.child:
        return run_child(args.child, args.out)
    if not os.environ.get("VITMAE_DATA"):
        raise SystemExit("loaders.py: set VITMAE_DATA to the data root (MNIST/, "
                         "cifar-10-batches-py/, VOCdevkit/)")
    result: dict = {"bench": "loaders"}
    for name in args.only:
        try:
            figures = {**measure_rates(name, args.batches, args.steps, args.rounds,
                                       args.shards),
                       **peak_memory(name)}
        except (FileNotFoundError, ValueError) as e:  # data set missing or not registered
            print(f"{name}: skipped ({e})", file=sys.stderr)
            result[f"{name}_skipped"] = str(e)[:200]
            continue
        print(name, rounded(figures), file=sys.stderr, flush=True)
        result.update({f"{name}_{k}": v for k, v in figures.items()})
    ratios = [v for k, v in result.items() if k.endswith("_ratio")]
    result["min_ratio"] = min(ratios) if ratios else None
    record(rounded(result), packages=("psutil",))


if __name__ == "__main__":
    main()

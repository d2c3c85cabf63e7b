"""Shared parts of the benchmarks: interleaved timing, the matmul ceiling, FLOP counting, and
the results file.

The machine these run on is noisy (speed swings of up to 1.8x over minutes), so a comparison
never times one side and then the other: `interleave` runs the contenders in turn, round after
round, and the figures are medians plus per-round ratios, whose spread is reported too.
Every benchmark ends with `record(result)`: the result is printed as the last line (one JSON
object) and appended, with the command line, library versions and date, to `results.jsonl`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"


OMP_ENV = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")


def use_passive_omp() -> None:
    """Re-run this script with OMP_WAIT_POLICY=PASSIVE unless a policy is set explicitly.

    OpenMP's default lets a thread spin at every parallel region's barrier; when another
    process holds one of the two cores, a 2-thread step then crawls (the MAE step here: about
    5 img/s spinning against about 33 img/s passive, the same for HF's ViTMAE). The policy
    is read when the OpenMP runtime loads, hence the fresh process. It applies to every
    contender alike and is recorded with the results; OMP_WAIT_POLICY=ACTIVE measures the
    default behaviour.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def interleave(steps: dict[str, Callable[[], object]], rounds: int,
               warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each step, calling them in turn for `warmup` + `rounds` rounds."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
    return times


def spread(values: list[float]) -> dict[str, float]:
    """Median with the 10th and 90th percentiles (min and max below 10 values)."""
    xs = sorted(values)
    if len(xs) < 10:
        lo, hi = xs[0], xs[-1]
    else:
        q = statistics.quantiles(xs, n=10)
        lo, hi = q[0], q[-1]
    return {"median": statistics.median(xs), "p10": lo, "p90": hi}


def per_round_ratio(fast: list[float], slow: list[float]) -> list[float]:
    """slow / fast per round: how many times faster `fast` was within each round."""
    return [s / f for f, s in zip(fast, slow, strict=True)]


def best_ratio(fast: list[float], slow: list[float]) -> float:
    """min(slow) / min(fast): the ratio of the least disturbed steps of each side."""
    return min(slow) / min(fast)


def step_figures(times: dict[str, list[float]], flops: float, mm_flops: float,
                 batch: int) -> dict[str, float]:
    """img/s of both sides, their per-round ratio and the share of the matmul ceiling, from
    the step times of `interleave` with keys 'vitmae', 'peer' and 'matmul'."""
    ratio = spread(per_round_ratio(times["vitmae"], times["peer"]))
    share = spread([(flops / t) / (mm_flops / m)
                    for t, m in zip(times["vitmae"], times["matmul"], strict=True)])
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "vitmae_img_s": batch / med["vitmae"],
        "peer_img_s": batch / med["peer"],
        "ratio": ratio["median"], "ratio_p10": ratio["p10"], "ratio_p90": ratio["p90"],
        "best_ratio": best_ratio(times["vitmae"], times["peer"]),
        "gflop_per_img": flops / batch / 1e9,
        "vitmae_gflop_s": flops / med["vitmae"] / 1e9,
        "ceiling_gflop_s": mm_flops / med["matmul"] / 1e9,
        "share_of_ceiling": share["median"], "share_p10": share["p10"], "share_p90": share["p90"],
    }


def sharded_step(model: torch.nn.Module, opt: torch.optim.Optimizer,
                 loss: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor],
                 batch: list[torch.Tensor], shards: int) -> Callable[[], None]:
    """vitmae's training step with `run.shards`: `loss(model, *shard)` on `shards` threads of one
    intra-op thread each (`vitmae.train.shards`), then the optimizer step."""
    from vitmae.train.shards import ShardedStep

    class Task:  # the task interface: train_step(model, batch, generator) -> (loss, metrics)
        @staticmethod
        def train_step(m, shard, generator=None):
            return loss(m, *shard), {}

    sharded = ShardedStep(shards)

    def step():
        sharded.step(Task, model, batch, 1.0, contextlib.nullcontext)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def sharded_figures(times: dict[str, list[float]], batch: int, shards: int) -> dict[str, float]:
    """The unsharded vitmae step ('vitmae_unsharded') beside the sharded one ('vitmae')."""
    if shards < 2:
        return {"shards": 1}
    unsharded = spread(per_round_ratio(times["vitmae_unsharded"], times["peer"]))
    return {"shards": shards,
            "vitmae_unsharded_img_s": batch / statistics.median(times["vitmae_unsharded"]),
            "unsharded_ratio": unsharded["median"]}


def matmul_step(n: int = 2048) -> tuple[Callable[[], object], float]:
    """A large fp32 matmul (n x n @ n x n) and its FLOPs: the machine's practical ceiling."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: torch.mm(a, b)), 2.0 * n ** 3


def sdpa_flops(batch: int, heads: int, q_len: int, kv_len: int, head_dim: int,
               backward: bool = True) -> float:
    """Attention FLOPs (QK^T and AV; FlopCounterMode sees none for SDPA on CPU).

    Forward: 2 matmuls of 2*q*kv*hd per head; backward: twice the forward (4 matmuls).
    """
    fwd = 2 * 2.0 * batch * heads * q_len * kv_len * head_dim
    return fwd * (3 if backward else 1)


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs that torch's FlopCounterMode sees while `fn` runs (matmuls, convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def versions(*packages: str) -> dict[str, str]:
    """Versions of python, torch and the given packages (those not installed are left out)."""
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["vitmae_commit"] = git_commit()
    return out


def git_commit() -> str:
    """The checkout's commit, with '+dirty' when files differ from it; '' outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=HERE, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return sha + ("+dirty" if dirty else "")


def machine() -> dict[str, object]:
    """CPU model, torch's thread count and the GPU, if any."""
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux
        pass
    return {"cpu": cpu, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def shareable(arg: str) -> str:
    """A command-line argument as others can read it: the data folder written as
    $VITMAE_DATA, a path under the current folder made relative; in `key=value` and
    `--flag=value`, the value."""
    key, eq, value = arg.rpartition("=") if not arg.startswith("/") else ("", "", arg)
    data = os.environ.get("VITMAE_DATA", "").rstrip("/") + "/"
    cwd = os.getcwd().rstrip("/") + "/"
    if data != "/" and value.startswith(data):
        value = "$VITMAE_DATA/" + value[len(data):]
    elif value.startswith(cwd):
        value = value[len(cwd):]
    return key + eq + value


def record(result: dict, packages: tuple[str, ...] = (), path: Path = RESULTS) -> None:
    """Append `result` with the command, versions and date to the results file; print it last."""
    row = {**result, "command": " ".join([Path(sys.executable).name, *map(shareable, sys.argv)]),
           "date": datetime.datetime.now().isoformat(timespec="seconds"),
           "versions": versions(*packages), "machine": machine(),
           "env": {k: os.environ[k] for k in OMP_ENV if k in os.environ}}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(result), flush=True)


def rounded(d: dict, digits: int = 4) -> dict:
    """Floats rounded to `digits` significant digits, for readable JSON."""
    return {k: float(f"{v:.{digits}g}") if isinstance(v, float) else v for k, v in d.items()}


def pretrain_without_evaluation(cfg) -> Path:
    """`vitmae.train.runner.run_pretrain(cfg)` with the end-of-epoch evaluation made a no-op.

    The peers' runs do no evaluation (and a full test-split pass would dominate a short
    run), so neither does this one; everything else, the run folder and checkpoint included,
    is the library's own path.
    """
    import vitmae.train.engine
    import vitmae.train.runner

    evaluate = vitmae.train.engine.evaluate
    vitmae.train.engine.evaluate = lambda *args, **kwargs: {}
    try:
        return vitmae.train.runner.run_pretrain(cfg, log=lambda *_: None)
    finally:
        vitmae.train.engine.evaluate = evaluate

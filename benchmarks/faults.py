"""Fault injection: kill, corrupt and resume a short CPU pretraining run, N times in a row.

Each trial starts `vitmae pretrain` on the built-in digits data (micro model, 12 steps, a
checkpoint every 2 steps, keep_last 2) and then, one to three times, SIGKILLs it: at a random
step, or the moment a checkpoint save has begun (its `.tmp-ckpt-*` folder appears). After some
kills it also corrupts the newest checkpoint (truncates, or flips a byte of, one of its files).
After each fault the run is resumed with `--resume`; the last resume runs to the end, and the
run is compared with an uninterrupted one (`vitmae.runs.run_differences`: bit-identical weights
and metrics.jsonl). A checkpoint counts as lost when, after a fault, no checkpoint of the run
verifies although one had been completed.

    PYTHONPATH=src python benchmarks/faults.py --runs 5 [--seed 0] [--out DIR]

The last line is `N runs, N resumed exactly, 0 checkpoints lost` (the real counts); the
figures are appended to benchmarks/results.jsonl with the command and date.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import record

from vitmae.runs.checkpoint import FILES, latest_good_checkpoint, list_checkpoints
from vitmae.runs.folder import metric_records, run_differences

STEPS = 12  # 128 images / batch 32 = 4 steps per epoch, 3 epochs
ARGS = ("-c", "digits", "model.arch=vit_micro_patch4", "model.decoder_embed_dim=32",
        "model.decoder_depth=1", "model.decoder_num_heads=2", "data.subset=128",
        "data.batch_size=32", "pretrain.optim.epochs=3", "run.ckpt_interval=2",
        "run.log_interval=1", "run.threads=1")
SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
    "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def launch(argv: list[str], log: Path) -> subprocess.Popen:
    """`python -m vitmae ARGV`, its output appended to `log`."""
    with open(log, "a") as f:
        return subprocess.Popen([sys.executable, "-m", "vitmae", *argv], env=ENV, stdout=f,
                                stderr=subprocess.STDOUT)


def started_at(proc: subprocess.Popen, log: Path, resumed: bool) -> int | None:
    """The step a process starts from (0, or the 'resumed from ... step S' it prints); None if
    it exits first."""
    if not resumed:
        return 0
    n_before = log.read_text().count("resumed from")
    while proc.poll() is None:
        found = re.findall(r"resumed from .* step (\d+)", log.read_text())
        if len(found) > n_before:
            return int(found[-1])
        time.sleep(0.01)
    return None


def current_step(run: Path) -> int:
    try:
        return max((r["step"] for r in metric_records(run) if r.get("split") == "train"),
                   default=0)
    except (OSError, ValueError):  # a line being written
        return -1


def kill_at_step(proc: subprocess.Popen, run: Path, step: int) -> bool:
    while proc.poll() is None:
        if current_step(run) >= step:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    return False


def kill_during_save(proc: subprocess.Popen, run: Path) -> bool:
    while proc.poll() is None:
        if any(name.startswith(".tmp-") for name in os.listdir(run)):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.0002)
    return False


def corrupt_newest(run: Path, rng: random.Random) -> str:
    """Truncate or flip a byte of one file of the newest checkpoint; -> what was done."""
    path = list_checkpoints(run)[-1] / rng.choice([*FILES, "meta.json"])
    data = bytearray(path.read_bytes())
    if rng.random() < 0.5:
        path.write_bytes(bytes(data[: len(data) // 2]))
        return f"truncated {path.parent.name}/{path.name}"
    data[rng.randrange(len(data))] ^= 0xFF
    path.write_bytes(bytes(data))
    return f"flipped a byte of {path.parent.name}/{path.name}"


def trial(k: int, out: Path, ref: Path, rng: random.Random, stats: dict) -> bool:
    """One run with 1-3 faults, resumed to the end; True when it matches the reference."""
    name, log = f"trial{k}", out / f"trial{k}.log"
    run = out / name
    proc, resumed = launch(["pretrain", *ARGS, f"run.output_dir={out}", f"run.name={name}"],
                           log), False
    for _ in range(rng.randint(1, 3)):
        start = started_at(proc, log, resumed)
        if start is None or start >= STEPS - 1:
            break
        while not run.is_dir() and proc.poll() is None:
            time.sleep(0.01)
        during_save = rng.random() < 0.4
        killed = (kill_during_save(proc, run) if during_save
                  else kill_at_step(proc, run, rng.randint(start + 1, STEPS - 1)))
        if not killed:
            print(f"  trial {k}: finished before the {'save' if during_save else 'step'} "
                  f"it was to be killed at")
            break
        in_save = any(p.name.startswith(".tmp-") for p in run.iterdir())
        stats["kills"] += 1
        stats["kills_during_save"] += in_save
        print(f"  trial {k}: SIGKILL after step {current_step(run)}"
              f"{' during a checkpoint save' if in_save else ''}")
        # a ckpt-* folder only ever appears complete (renamed into place), and a resumed
        # process started from a verified one: either way one had been completed
        completed = resumed or bool(list_checkpoints(run))
        if len(list_checkpoints(run)) >= 2 and rng.random() < 0.4:
            print(f"  trial {k}: {corrupt_newest(run, rng)}")
            stats["corruptions"] += 1
        if latest_good_checkpoint(run, _quiet) is None:
            if completed:
                stats["lost"] += 1
                print(f"  trial {k}: no loadable checkpoint left after the kill")
                return False
            shutil.rmtree(run)  # killed before its first checkpoint: start again
            proc, resumed = launch(["pretrain", *ARGS, f"run.output_dir={out}",
                                    f"run.name={name}"], log), False
            continue
        proc, resumed = launch(["pretrain", "--resume", str(run)], log), True
    code = proc.wait()
    text = log.read_text()
    stats["fallbacks"] += text.count("falling back")
    stats["partial_saves_removed"] += text.count("a checkpoint save that was interrupted")
    differences = run_differences(run, ref) if code == 0 else [f"exit code {code}"]
    print(f"trial {k}: {'exact' if not differences else differences}", flush=True)
    return not differences


def _quiet(msg: str) -> None:
    pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="folder for the runs (default: a temporary one, removed)")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="vitmae-faults-"))
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    ref = launch(["pretrain", *ARGS, f"run.output_dir={out}", "run.name=reference"],
                 out / "reference.log")
    if ref.wait() != 0:
        sys.exit(f"the uninterrupted run failed; see {out / 'reference.log'}")
    stats = dict.fromkeys(("kills", "kills_during_save", "corruptions", "fallbacks",
                           "partial_saves_removed", "lost"), 0)
    exact = sum(trial(k, out, out / "reference", rng, stats) for k in range(args.runs))
    lost = stats.pop("lost")
    record({"bench": "faults", "runs": args.runs, "resumed_exactly": exact,
            "checkpoints_lost": lost, **stats, "seed": args.seed,
            "seconds": round(time.perf_counter() - t0, 1)})
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    print(f"{args.runs} runs, {exact} resumed exactly, {lost} checkpoints lost")


if __name__ == "__main__":
    main()

"""Run folders: every run is a record that is enough to reproduce or resume it.

A run folder holds `config.yaml` (the resolved config), `run.json` (git commit, command line,
library versions, host facts), `dataset.json` (what using the model needs from its data: class
names, channels, normalisation), `metrics.jsonl` (one JSON object per logging interval, per
evaluation and per monitor pass) and the checkpoints (`ckpt-<step>/`, see `vitmae.runs.checkpoint`).
`RunDir.log` is the one place that logs: it also hands each record to the run's sinks
(`vitmae.runs.sinks`: TensorBoard). `run_differences` says whether a resumed run reproduced an
uninterrupted one exactly.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from vitmae import distributed as dist
from vitmae.errors import PathError
from vitmae.runs.checkpoint import list_checkpoints, read_state_file


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, if it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).parent, capture_output=True, text=True,
                               timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import numpy
    import torch
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "cuda": torch.version.cuda, "platform": platform.platform()}


class RunDir:
    """A run folder; only the main process writes into it. As a context manager it closes
    its sinks however the run ends."""

    def __init__(self, path: str | Path, sinks: list | None = None):
        self.path = Path(path)
        self.metrics_path = self.path / METRICS
        self.sinks = sinks or []  # objects with write(record) and close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        for sink in self.sinks:
            sink.close()

    @classmethod
    def create(cls, output_dir: str, name: str | None, stage: str, dataset: str,
               config: dict) -> RunDir:
        if name is None:
            name = f"{stage}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = cls(Path(output_dir) / name)
        if dist.is_main():
            run.check_writable()
            (run.path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            info = {"stage": stage, "git_commit": git_commit(), "command": sys.argv,
                    "cwd": os.getcwd(), "world_size": dist.world_size(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions()}
            (run.path / RUN_INFO).write_text(json.dumps(info, indent=1))
        dist.barrier()
        return run

    def check_writable(self) -> None:
        """Create the folder and write a probe file: fail at start, not at the first
        checkpoint, if the folder cannot be created or written (read-only, a file in the
        way, disk full)."""
        probe = self.path / ".write-test"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as e:
            raise PathError(f"run folder {self.path} cannot be created or written "
                            f"({type(e).__name__}: {e}); choose another run.output_dir") from None

    def record_data(self, name: str, ds) -> None:
        """Write `dataset.json`: the data set's name, class names (null where it has none),
        class count, channels and normalisation, so that `vitmae predict` can use the model
        on new images without the training data."""
        if dist.is_main():
            info = {"dataset": name, "classes": getattr(ds, "classes", None),
                    "num_classes": ds.num_classes, "in_chans": ds.in_chans,
                    "mean": list(ds.mean), "std": list(ds.std)}
            (self.path / DATA_INFO).write_text(json.dumps(info, indent=1))

    def log(self, record: dict) -> None:
        if dist.is_main():
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            for sink in self.sinks:
                sink.write(record)

    def metrics_size(self) -> int:
        return self.metrics_path.stat().st_size if self.metrics_path.exists() else 0

    def truncate_metrics(self, size: int) -> None:
        """Drop what a killed run logged after its last checkpoint (resume rewrites it)."""
        if dist.is_main() and self.metrics_path.exists():
            with open(self.metrics_path, "r+b") as f:
                f.truncate(size)


DATA_INFO = "dataset.json"
RUN_INFO = "run.json"
METRICS = "metrics.jsonl"


def read_data_info(run: str | Path) -> dict | None:
    """The run's dataset.json (`RunDir.record_data`); None for runs made before it existed."""
    path = Path(run) / DATA_INFO
    return json.loads(path.read_text()) if path.is_file() else None


def read_run_info(run: str | Path) -> dict:
    """The run's run.json (commit, command, versions, start); {} when it has none."""
    path = Path(run) / RUN_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


# keys of a metrics.jsonl record that are not measurements of the model
COUNTS = ("epoch", "step", "n")  # the x axis, and evaluation counts
TIMING = ("img_s", "peak_mem_mb")  # differ between any two runs of the same config
NOTES = ("skipped_files", "map_classes")  # bookkeeping of the data read
NOT_METRICS = COUNTS + TIMING + NOTES


def metric_records(run: str | Path, ignore: tuple[str, ...] = TIMING) -> list[dict]:
    """The records of a run's metrics.jsonl without the keys `ignore` (by default the timing
    fields); [] when the run has logged nothing yet."""
    path = Path(run) / METRICS
    lines = path.read_text().splitlines() if path.is_file() else []
    return [{k: v for k, v in json.loads(x).items() if k not in ignore} for x in lines if x.strip()]


def run_differences(run: str | Path, reference: str | Path) -> list[str]:
    """What differs between two finished runs: the newest checkpoint's name, any weight not
    bit-identical, and metrics.jsonl apart from timing. [] means the same run."""
    ckpts = [list_checkpoints(r) for r in (run, reference)]
    if not ckpts[0] or not ckpts[1] or ckpts[0][-1].name != ckpts[1][-1].name:
        return [f"newest checkpoint: {[c[-1].name if c else None for c in ckpts]}"]
    a, b = (read_state_file(c[-1] / "model.safetensors")[0] for c in ckpts)
    out = [f"weight {k}" for k in sorted(a.keys() | b.keys())
           if k not in a or k not in b or not torch.equal(a[k], b[k])]
    ra, rb = metric_records(run), metric_records(reference)
    if ra != rb:
        pairs = enumerate(zip(ra, rb, strict=False))
        first = next((i for i, (x, y) in pairs if x != y), min(len(ra), len(rb)))
        out.append(f"metrics.jsonl from record {first} ({len(ra)} vs {len(rb)} records)")
    return out


def run_dir_of(checkpoint: str | Path) -> Path | None:
    """The run folder a checkpoint path belongs to (a run folder, or a ckpt-* inside one)."""
    path = Path(checkpoint)
    for cand in (path, path.parent, path.parent.parent):
        if (cand / "config.yaml").is_file():
            return cand
    return None

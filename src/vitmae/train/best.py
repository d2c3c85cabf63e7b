"""`finetune.best_by`: keep the weights of the epoch with the best validation metric.

MedMNIST's protocol, and the usual guard where the last epoch has overfitted: after every
validation, an epoch whose `<by>` beats every earlier epoch's (the first one on a tie; NaN
never counts) has its weights written to `RUN/best/model.safetensors`, and
`RUN/best/best.json` names the epoch and holds its validation figures (`val_<metric>`) and
what the monitors measured after it (`test_<metric>` with `finetune.test_split`). The folder
opens as a checkpoint: `vitmae evaluate|predict|export --checkpoint RUN/best`. The best so far
is read back from the run's own records on resume, so a resumed run keeps the same epoch.
Files are replaced atomically (written beside, then renamed), on rank 0 only.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch.nn as nn
from safetensors.torch import save_file

from vitmae import distributed as dist
from vitmae.errors import UsageError
from vitmae.runs.checkpoint import cpu_weights
from vitmae.runs.folder import RunDir, metric_records

BEST = "best"  # the folder under the run
RECORD = "best.json"


def _figures(metrics: dict, prefix: str) -> dict:
    return {f"{prefix}{k}": v for k, v in metrics.items()
            if isinstance(v, int | float) and k not in ("epoch", "step")}


def _replace(path: Path, write) -> None:
    """write(tmp path) then rename it over `path`: a reader sees the old file or the new."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


class BestEpoch:
    """`validated(epoch, step, metrics, model)` after each validation, `monitored(epoch,
    record)` after the epoch's monitors; `value` is the best `<by>` so far (None: none yet)."""

    def __init__(self, run: RunDir, by: str):
        self.folder, self.by = run.path / BEST, by
        seen = [r[by] for r in metric_records(run.path)
                if r.get("split") == "val" and isinstance(r.get(by), int | float)
                and not math.isnan(r[by])]
        self.value: float | None = max(seen) if seen else None
        self.record: dict | None = None  # of the epoch just validated, if it is the best

    def validated(self, epoch: int, step: int, metrics: dict, model: nn.Module) -> bool:
        """Keep `model` if this epoch's `<by>` beats every earlier one; -> whether it did."""
        self.record = None
        if self.by not in metrics:
            raise UsageError(f"finetune.best_by={self.by}: the validation does not give it; "
                             f"it gives {', '.join(sorted(_figures(metrics, ''))) or 'nothing'}")
        value = metrics[self.by]
        if math.isnan(value) or (self.value is not None and value <= self.value):
            return False
        self.value = value
        self.record = {"epoch": epoch, "step": step, "by": self.by, **_figures(metrics, "val_")}
        if dist.is_main():
            self.folder.mkdir(exist_ok=True)
            weights = cpu_weights(model)
            _replace(self.folder / "model.safetensors",
                     lambda tmp: save_file(weights, str(tmp)))
            self._write()
        return True

    def monitored(self, epoch: int, record: dict) -> None:
        """Add the monitors' figures of the epoch just kept (its test split's) to best.json."""
        if self.record is not None and self.record["epoch"] == epoch and record:
            self.record.update(_figures(record, ""))
            if dist.is_main():
                self._write()

    def _write(self) -> None:
        text = json.dumps(self.record, indent=1)
        _replace(self.folder / RECORD, lambda tmp: tmp.write_text(text))

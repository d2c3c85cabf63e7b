"""Where a run's records go besides `metrics.jsonl`: `RunDir.log` hands each record to its sinks.

A sink has `write(record)` and `close()`, and is called on rank 0 only. `TensorBoardSink`
(`run.tensorboard=true`) writes the records as TensorBoard events into the run folder, so that
`tensorboard --logdir runs/` shows every run: each number of a record as the scalar
`<split>/<key>` at the record's step, each picture it names (a `*_png` key holding a path in
the run folder, such as the MAE monitor's `recon_png`) as the image `<split>/<name>`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vitmae.errors import ConfigError
from vitmae.runs.folder import COUNTS

PICTURE = "_png"  # a record key ending so holds a PNG path relative to the run folder
NOT_SCALARS = COUNTS  # the x axis, and evaluation counts


def require_tensorboard():
    """torch's SummaryWriter class; a ConfigError that says what to install when the
    tensorboard package is missing."""
    try:  # an optional dependency: imported only when asked for
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ConfigError("run.tensorboard=true needs the tensorboard package: "
                          "pip install tensorboard (or pip install 'vitmae[tensorboard]'), "
                          "or set run.tensorboard=false") from e
    return SummaryWriter


class TensorBoardSink:
    """Events in `folder`, written from the first record on (rank 0 only: `RunDir.log`)."""

    def __init__(self, folder: str | Path):
        self._make_writer = require_tensorboard()
        self.folder = Path(folder)
        self.writer = None

    def write(self, record: dict) -> None:
        step = int(record["step"])
        if self.writer is None:
            # purge_step: a resumed run hides the events that the killed run wrote after its
            # checkpoint (metrics.jsonl drops them too; both are written again)
            self.writer = self._make_writer(str(self.folder), purge_step=step)
        split = record.get("split", "train")
        for key, value in record.items():
            if key in NOT_SCALARS or isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                self.writer.add_scalar(f"{split}/{key}", value, step)
            elif key.endswith(PICTURE) and isinstance(value, str):
                with Image.open(self.folder / value) as im:
                    pixels = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
                self.writer.add_image(f"{split}/{key[: -len(PICTURE)]}", pixels, step,
                                      dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

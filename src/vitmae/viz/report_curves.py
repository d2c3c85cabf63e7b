"""The curves of `vitmae report`: metrics.jsonl records drawn with matplotlib, as PNG bytes.

One figure per stage (pretrain, finetune), one panel per (split, metric), one line per run,
so that runs of one stage overlay (MAE against scratch fine-tuning). Training records are
drawn against the optimizer step, validation and monitor records against the epoch; a
`baseline_<metric>` of the same record is the dashed line of the `<metric>` panel. Figures are
drawn with matplotlib's object API (`Figure`), which needs no pyplot and no global backend.
"""

from __future__ import annotations

import io
import math

from matplotlib.figure import Figure

from vitmae.runs.folder import NOT_METRICS

SPLITS = ("train", "val", "monitor")  # panel order
FIRST = ("loss", "lr")  # within a split, then the order in which keys first appear
# every number but the counts, memory and bookkeeping; throughput (img_s) is drawn too
SKIP = tuple(k for k in NOT_METRICS if k != "img_s")
COLUMNS = 3

Series = dict[tuple[str, str], tuple[list[float], list[float]]]  # (split, key) -> (x, y)


def series(records: list[dict]) -> Series:
    """Every number of every record, as (x, y) lists per (split, key)."""
    out: Series = {}
    for rec in records:
        split = rec.get("split", "train")
        x = rec["step"] if split == "train" else rec["epoch"]
        for key, value in rec.items():
            if key in SKIP or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            xs, ys = out.setdefault((split, key), ([], []))
            xs.append(x)
            ys.append(value)
    return out


def curve_figures(runs: list[tuple[str, str, list[dict]]]) -> list[tuple[str, bytes]]:
    """runs: (name, stage, records) -> [(stage, PNG bytes)], one figure per stage."""
    stages = list(dict.fromkeys(stage for _, stage, _ in runs))
    figures = []
    for stage in stages:
        lines = [(name, series(records)) for name, s, records in runs if s == stage]
        panels = sorted({key for _, ser in lines for key in ser
                         if not key[1].startswith("baseline_")},
                        key=lambda k: (SPLITS.index(k[0]) if k[0] in SPLITS else len(SPLITS),
                                       FIRST.index(k[1]) if k[1] in FIRST else len(FIRST),
                                       _first_seen(lines, k)))
        if panels:
            figures.append((stage, draw(stage, panels, lines)))
    return figures


def draw(stage: str, panels: list[tuple[str, str]], lines: list[tuple[str, Series]]) -> bytes:
    rows = math.ceil(len(panels) / COLUMNS)
    cols = min(COLUMNS, len(panels))
    fig = Figure(figsize=(4.4 * cols, 2.9 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    for ax, (split, key) in zip(axes, panels, strict=False):
        for i, (name, ser) in enumerate(lines):
            color = f"C{i % 10}"
            if (split, key) in ser:
                xs, ys = ser[(split, key)]
                ax.plot(xs, ys, color=color, label=name, lw=1.2,
                        marker="o" if split != "train" else None, ms=3)
            if (split, f"baseline_{key}") in ser:
                ax.axhline(ser[(split, f"baseline_{key}")][1][-1], color=color, ls="--",
                           lw=1, label=f"{name}: trivial baseline")
        ax.set_title(f"{key} ({split})", fontsize=9)
        ax.set_xlabel("step" if split == "train" else "epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(lines) > 1 or any((split, f"baseline_{key}") in ser for _, ser in lines):
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(stage, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def _first_seen(lines: list[tuple[str, Series]], key: tuple[str, str]) -> int:
    """The position of `key` among the first run's keys that has it."""
    for _, ser in lines:
        if key in ser:
            return list(ser).index(key)
    return 0

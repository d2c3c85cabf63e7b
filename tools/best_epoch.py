"""The test figures of the epoch with the best validation metric: MedMNIST's protocol.

    python tools/best_epoch.py RUN [RUN ...] [--by auc]

A fine-tuning run with `data.val_split` and `finetune.test_split` logs, every epoch, a `val`
record (`auc`, `acc`, ...) and a `monitor` record (`test_auc`, `test_acc`, ...). MedMNIST
reports the test figures of the epoch whose validation AUC is best (the first such epoch on a
tie). Prints one JSON line per run, then, for several runs, their mean and spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from vitmae.runs.folder import metric_records


def best_epoch(records: list[dict], by: str = "auc") -> dict:
    """{'epoch', 'val_<by>', and every test_* figure of that epoch} for the first epoch with
    the highest validation `by`."""
    val = {r["epoch"]: r[by] for r in records if r.get("split") == "val" and by in r}
    test = {r["epoch"]: r for r in records if r.get("split") == "monitor"
            and f"test_{by}" in r}
    epochs = [e for e in val if e in test]
    if not epochs:
        raise SystemExit(f"no epoch has both a val '{by}' and a test_{by} record (fine-tune "
                         f"with data.val_split and finetune.test_split set)")
    best = max(epochs, key=lambda e: (val[e], -e))
    return {"epoch": best, f"val_{by}": val[best],
            **{k: v for k, v in test[best].items() if k.startswith("test_")}}


def summary(rows: list[dict]) -> dict:
    """Mean and population spread of each test figure over runs."""
    keys = [k for k in rows[0] if k.startswith("test_") and isinstance(rows[0][k], float)]
    return {k: {"mean": statistics.fmean(r[k] for r in rows),
                "std": statistics.pstdev(r[k] for r in rows)} for k in keys}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    ap.add_argument("--by", default="auc", help="validation metric to select on")
    args = ap.parse_args(argv)
    rows = [{"run": str(run), **best_epoch(metric_records(run, ignore=()), args.by)}
            for run in args.runs]
    for row in rows:
        print(json.dumps(row))
    if len(rows) > 1:
        print(json.dumps({"runs": len(rows), **summary(rows)}))
    return rows


if __name__ == "__main__":
    main()

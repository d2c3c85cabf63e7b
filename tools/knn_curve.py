"""The k-NN monitor against the MAE loss, for one or more pretraining runs.

    python tools/knn_curve.py RUN [RUN ...] [--out docs/knn_curves.png]

Reads each run's metrics.jsonl, prints per epoch the mean training loss, the loss on the fixed
validation batch and the k-NN top-1 of the monitor (a markdown table per run), says whether
k-NN rose at every monitor while the loss fell, and draws one panel per run: the loss on the
left axis, k-NN top-1 (and its trivial baseline, dashed) on the right.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.figure import Figure

from vitmae.runs.folder import metric_records


def read(run: Path) -> list[dict]:
    """Every record of the run's metrics.jsonl, timing fields included."""
    if not (run / "metrics.jsonl").is_file():
        raise SystemExit(f"{run / 'metrics.jsonl'}: no such file (expected a vitmae run folder)")
    return metric_records(run, ignore=())


def per_epoch(records: list[dict]) -> list[dict]:
    """One row per monitored epoch: epoch, mean training loss since the previous monitor,
    recon_loss, knn_top1, baseline_knn_top1."""
    rows, losses = [], []
    for rec in records:
        split = rec.get("split", "train")
        if split == "train" and "loss" in rec:
            losses.append(rec["loss"])
        elif split == "monitor" and "knn_top1" in rec:
            rows.append({"epoch": rec["epoch"],
                         "train_loss": sum(losses) / len(losses) if losses else float("nan"),
                         "recon_loss": rec.get("recon_loss", float("nan")),
                         "knn_top1": rec["knn_top1"],
                         "baseline_knn_top1": rec.get("baseline_knn_top1")})
            losses = []
    return rows


def rises_while_loss_falls(rows: list[dict]) -> bool:
    """k-NN top-1 strictly up and the training loss strictly down from each monitor to the next."""
    pairs = list(zip(rows, rows[1:], strict=False))
    return bool(pairs) and all(b["knn_top1"] > a["knn_top1"] and b["train_loss"] < a["train_loss"]
                               for a, b in pairs)


def table(name: str, rows: list[dict]) -> str:
    lines = [name, "", "| epoch | MAE loss (train, mean) | MAE loss (val batch) | k-NN top-1 |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {r['epoch']} | {r['train_loss']:.4f} | {r['recon_loss']:.4f} | "
              f"{100 * r['knn_top1']:.2f}% |" for r in rows]
    return "\n".join(lines)


def draw(runs: list[tuple[str, list[dict]]], out: Path) -> None:
    fig = Figure(figsize=(4.6 * len(runs), 3.2), layout="constrained")
    axes = fig.subplots(1, len(runs), squeeze=False)[0]
    for ax, (name, rows) in zip(axes, runs, strict=True):
        epochs = [r["epoch"] for r in rows]
        ax.plot(epochs, [r["train_loss"] for r in rows], "o-", color="C0", label="MAE loss (train)")
        ax.plot(epochs, [r["recon_loss"] for r in rows], "s--", color="C0", alpha=0.6,
                label="MAE loss (val batch)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("MAE loss", color="C0")
        knn = ax.twinx()
        knn.plot(epochs, [100 * r["knn_top1"] for r in rows], "o-", color="C3", label="k-NN top-1")
        if rows and rows[-1]["baseline_knn_top1"] is not None:
            knn.axhline(100 * rows[-1]["baseline_knn_top1"], color="C3", ls=":", lw=1,
                        label="trivial baseline")
        knn.set_ylabel("k-NN top-1 (%)", color="C3")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        handles = ax.get_legend_handles_labels()[0] + knn.get_legend_handles_labels()[0]
        ax.legend(handles=handles, fontsize=7, loc="center right")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="MAE pretraining run folders")
    ap.add_argument("--names", nargs="*", help="a title per run (default: the folder names)")
    ap.add_argument("--out", type=Path, default=Path("docs/knn_curves.png"))
    args = ap.parse_args(argv)
    names = args.names or [run.name for run in args.runs]
    if len(names) != len(args.runs):
        raise SystemExit(f"--names: {len(names)} names for {len(args.runs)} runs")
    runs = []
    for name, run in zip(names, args.runs, strict=True):
        rows = per_epoch(read(run))
        if not rows:
            raise SystemExit(f"{run}: no k-NN monitor records (pretrain.knn_every was 0?)")
        runs.append((name, rows))
        print(table(name, rows))
        verdict = "yes" if rises_while_loss_falls(rows) else "no"
        print(f"\nk-NN rises at every monitor while the loss falls: {verdict}\n")
    draw(runs, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

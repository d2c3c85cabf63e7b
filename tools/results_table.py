"""Render the results tables from results/summary.jsonl: the full table (one row per preset,
start and metric, peers' rows marked) and the label-efficiency study (its records carry
`"study": "label_efficiency"`) as one table of top-1 by start and labelled fraction, both for
docs/results.md; and the README's headline table, one row per preset family (`HEADLINE`).

    python tools/results_table.py          # print the tables
    python tools/results_table.py --write  # replace them in docs/results.md and README.md

A test checks that both files hold exactly what this renders.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = ROOT / "results" / "summary.jsonl"
START, END = "<!-- results:start -->", "<!-- results:end -->"
STUDY = "label_efficiency"
STUDY_START, STUDY_END = f"<!-- {STUDY}:start -->", f"<!-- {STUDY}:end -->"
HEAD_START, HEAD_END = "<!-- headline:start -->", "<!-- headline:end -->"
HEADER = ("| preset | data set | start | metric | result | trivial baseline | founding claim | "
          "time, machine | command |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
# The README's headline: one row per preset family, each the (preset, start, metric) of its
# best vitmae row in the full table; a family of two starts shows both, " / " between them.
HEADLINE = [
    ("digits (built-in, offline)", [("digits", "mae", "top1")]),
    ("MNIST", [("mnist_hybrid", "mae", "top1")]),
    ("MNIST segmentation, 1-3 digits per canvas", [("mnist_seg_hybrid", "scratch", "miou")]),
    ("CIFAR-10 from ImageNet-21k ViT-Tiny", [("cifar10_vit_tiny_224", "imagenet21k", "top1")]),
    ("CIFAR-10, MAE on CIFAR / from scratch", [("cifar10", "mae", "top1"),
                                               ("cifar10", "scratch", "top1")]),
    ("VOC segmentation", [("voc_seg_vit_tiny", "imagenet21k", "miou")]),
    ("VOC labels (multi-label)", [("voc_cls_vit_tiny", "imagenet21k", "map")]),
    ("AdrenalMNIST3D scans, MAE / from scratch", [("adrenal3d", "mae", "auc"),
                                                  ("adrenal3d", "scratch", "auc")]),
]


def _num(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    percent = metric.endswith("top1") or metric == "pixel_acc"
    return f"{100 * value:.2f}%" if percent else f"{value:.3f}"


def _commands(texts) -> str:
    """Each command of `texts` (one or more per text, split at ";") once, as code, one per line."""
    parts = dict.fromkeys(c.strip() for text in texts for c in text.split(";"))
    return "<br>".join(f"`{c}`" for c in parts)


def rows(path: Path = SUMMARY) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def key(r: dict) -> tuple:
    """What tells two records apart: one value per key."""
    return r["preset"], r["init"], r["metric"], r["labels_fraction"], r.get("study"), r.get("peer")


def render(records: list[dict]) -> str:
    """The full table; a peer's row (`"peer": name`, another code base's model on the preset's
    data) names the peer beside the preset and is not in bold."""
    lines = [HEADER]
    for r in (r for r in records if "study" not in r):
        time = f"{r['minutes']:.0f} min" if r["minutes"] is not None else "-"
        commands = _commands([r["command"]])
        preset = f"`{r['preset']}`" + (f" data, {r['peer']}" if r.get("peer") else "")
        value = _num(r["metric"], r["value"])
        lines.append(
            f"| {preset} | {r['dataset']} | {r['init']} | {r['metric']} | "
            f"{value if r.get('peer') else f'**{value}**'} | {_num(r['metric'], r['baseline'])} | "
            f"{_num('top1' if r['claim'] is not None else r['metric'], r['claim'])} | "
            f"{time}, {r['machine']}, {r['date']} | {commands} |")
    return "\n".join(lines)


def render_study(records: list[dict]) -> str:
    """The study's top-1, one row per start and one column per labelled fraction, with the
    minutes of each run and the command that made them all."""
    study = [r for r in records if r.get("study") == STUDY]
    if not study:
        return ""
    fractions = sorted({r["labels_fraction"] for r in study})
    cells = {(r["init"], r["preset"], r["labels_fraction"]): r for r in study}
    lines = ["| start | " + " | ".join(f"{f:.0%} labels" for f in fractions) + " |",
             "| --- |" + " --- |" * len(fractions)]
    for init, preset in dict.fromkeys((r["init"], r["preset"]) for r in study):
        row = [cells.get((init, preset, f)) for f in fractions]
        lines.append(f"| {init} (`{preset}`) | " + " | ".join(
            "-" if r is None else f"**{_num('top1', r['value'])}** ({r['minutes']:.0f} min)"
            for r in row) + " |")
    first = study[0]
    minutes = sum(r["minutes"] for r in study)
    commands = _commands(r["command"] for r in study)
    lines.append(f"\n{first['machine']}, {first['date']}, {minutes:.0f} min in all: {commands}")
    return "\n".join(lines)


def headline(records: list[dict]) -> list[tuple[str, list[dict]]]:
    """Each family of `HEADLINE` with its records, in order; a missing record is an error."""
    by_key = {(r["preset"], r["init"], r["metric"]): r for r in records
              if "study" not in r and not r.get("peer") and r["labels_fraction"] == 1.0}
    return [(family, [by_key[k] for k in keys]) for family, keys in HEADLINE]


def render_headline(records: list[dict]) -> str:
    lines = ["| task | preset (start) | metric | vitmae | trivial baseline | minutes, 2 cores "
             "| command |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for family, rs in headline(records):
        presets = " / ".join(dict.fromkeys(f"`{r['preset']}`" for r in rs))
        starts = " / ".join(r["init"] for r in rs)
        lines.append(
            f"| {family} | {presets} ({starts}) | {rs[0]['metric']} | "
            + " / ".join(f"**{_num(r['metric'], r['value'])}**" for r in rs) + " | "
            + _num(rs[0]["metric"], rs[0]["baseline"]) + " | "
            + " / ".join("-" if r["minutes"] is None else f"{r['minutes']:.0f}" for r in rs)
            + f" | {_commands(r['command'] for r in rs)} |")
    return "\n".join(lines)


def headline_block(records: list[dict]) -> str:
    return f"{HEAD_START}\n{render_headline(records)}\n{HEAD_END}"


def block(records: list[dict]) -> str:
    return f"{START}\n{render(records)}\n{END}"


def study_block(records: list[dict]) -> str:
    return f"{STUDY_START}\n{render_study(records)}\n{STUDY_END}"


def replace(text: str, start: str, end: str, new: str) -> str:
    """`text` with the part from `start` to `end` (markers included) replaced by `new`."""
    head, rest = text.split(start, 1)
    return head + new + rest.split(end, 1)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true",
                    help="replace the tables in docs/results.md and README.md")
    args = ap.parse_args()
    records = rows()
    if not args.write:
        print("\n\n".join((headline_block(records), block(records), study_block(records))))
        return
    results = ROOT / "docs" / "results.md"
    text = replace(results.read_text(), START, END, block(records))
    results.write_text(replace(text, STUDY_START, STUDY_END, study_block(records)))
    readme = ROOT / "README.md"
    readme.write_text(replace(readme.read_text(), HEAD_START, HEAD_END, headline_block(records)))


if __name__ == "__main__":
    main()

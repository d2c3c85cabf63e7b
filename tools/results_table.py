"""Render the README's results tables from results/summary.jsonl: one row per preset, and
the label-efficiency study (its records carry `"study": "label_efficiency"`) as one table of
top-1 by start and labelled fraction.

    python tools/results_table.py          # print the tables
    python tools/results_table.py --write  # replace them in README.md between the markers

A test checks that README.md holds exactly what this renders.
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
HEADER = ("| preset | data set | start | metric | vitmae | trivial baseline | founding claim | "
          "time, machine | command |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")


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


def render(records: list[dict]) -> str:
    lines = [HEADER]
    for r in (r for r in records if "study" not in r):
        time = f"{r['minutes']:.0f} min" if r["minutes"] is not None else "-"
        commands = _commands([r["command"]])
        lines.append(
            f"| `{r['preset']}` | {r['dataset']} | {r['init']} | {r['metric']} | "
            f"**{_num(r['metric'], r['value'])}** | {_num(r['metric'], r['baseline'])} | "
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
    ap.add_argument("--write", action="store_true", help="replace the tables in README.md")
    args = ap.parse_args()
    records = rows()
    if not args.write:
        print(block(records) + "\n\n" + study_block(records))
        return
    readme = ROOT / "README.md"
    text = replace(readme.read_text(), START, END, block(records))
    if STUDY_START in text:
        text = replace(text, STUDY_START, STUDY_END, study_block(records))
    readme.write_text(text)


if __name__ == "__main__":
    main()

"""Render the README's results table from results/summary.jsonl (one row per preset).

    python tools/results_table.py          # print the table
    python tools/results_table.py --write  # replace it in README.md between the markers

A test checks that README.md holds exactly what this renders.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = ROOT / "results" / "summary.jsonl"
START, END = "<!-- results:start -->", "<!-- results:end -->"
HEADER = ("| preset | data set | start | metric | vitmae | trivial baseline | founding claim | "
          "time, machine | command |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def _num(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    percent = metric.endswith("top1") or metric == "pixel_acc"
    return f"{100 * value:.2f}%" if percent else f"{value:.3f}"


def rows(path: Path = SUMMARY) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def render(records: list[dict]) -> str:
    lines = [HEADER]
    for r in records:
        time = f"{r['minutes']:.0f} min" if r["minutes"] is not None else "-"
        commands = "<br>".join(f"`{c.strip()}`" for c in r["command"].split(";"))
        lines.append(
            f"| `{r['preset']}` | {r['dataset']} | {r['init']} | {r['metric']} | "
            f"**{_num(r['metric'], r['value'])}** | {_num(r['metric'], r['baseline'])} | "
            f"{_num('top1' if r['claim'] is not None else r['metric'], r['claim'])} | "
            f"{time}, {r['machine']}, {r['date']} | {commands} |")
    return "\n".join(lines)


def block(records: list[dict]) -> str:
    return f"{START}\n{render(records)}\n{END}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="replace the table in README.md")
    args = ap.parse_args()
    text = block(rows())
    if not args.write:
        print(text)
        return
    readme = ROOT / "README.md"
    old = readme.read_text()
    head, rest = old.split(START, 1)
    readme.write_text(head + text + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()

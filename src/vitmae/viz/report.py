"""`write_report`: one self-contained HTML page about one or more run folders (`vitmae report`).

Everything is inside the file: pictures as base64 PNG, the style inline, no script and no link,
so it opens offline. Its sections (`SECTIONS`, in this order): the runs (command, commit,
environment); the final metrics beside the trivial baseline; the curves of metrics.jsonl
(`vitmae.viz.report_curves`; runs of the same stage overlaid, e.g. MAE against scratch
fine-tuning); the MAE reconstruction grids over time; the confusion matrices of
`vitmae evaluate`; the segmentation pictures of `vitmae visualize`; the summary and pictures of
`vitmae robustness`; each run's config.
A folder that holds run folders (a `vitmae demo` folder) stands for those runs.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from vitmae.runs.folder import NOT_METRICS, metric_records, read_run_info
from vitmae.runs.sinks import PICTURE
from vitmae.viz.report_curves import curve_figures
from vitmae.viz.robustness import EXAMPLES_PNG, SEVERITY_PNG

SECTIONS = {"runs": "Runs", "metrics": "Final metrics", "curves": "Curves",
            "reconstructions": "Reconstructions over time", "confusion": "Confusion matrices",
            "segmentation": "Segmentation", "robustness": "Robustness", "config": "Config"}
ATTACK_KEY = re.compile(r"(\w+)_([\d.e+-]+)/255")  # summary key of an attack: pgd_8/255
MAX_GRIDS = 6  # reconstruction grids shown per run, evenly spaced over its epochs
BASELINES = ("Trivial baseline: classification, the test set's most frequent class; "
             "segmentation, every pixel background; multi-label, every label negative; "
             "k-NN and linear probe, the test split's most frequent class")
STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1500px;
padding:0 1em;color:#222}h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.25em .5em;
text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;
font-variant-numeric:tabular-nums}img{max-width:100%}.pics{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}figcaption{font-size:.8em;color:#555}.pics img{width:320px}
.wide img{width:auto;max-width:100%}pre{background:#f8f8f8;padding:.5em;font-size:.8em}
p.none{color:#777;font-style:italic}code{font-size:.9em}"""


@dataclass
class Run:
    path: Path
    name: str
    info: dict  # run.json
    config_text: str  # config.yaml
    records: list[dict]  # metrics.jsonl
    evaluation: dict  # eval/metrics.json ({} before `vitmae evaluate`)
    robustness: dict  # robustness/summary.json ({} before `vitmae robustness`)

    @property
    def stage(self) -> str:
        return self.info.get("stage", "run")


def find_runs(paths: list[str | Path]) -> list[Path]:
    """The run folders (those with a config.yaml) named, or one level below a named folder."""
    found = []
    for path in map(Path, paths):
        if (path / "config.yaml").is_file():
            found.append(path)
            continue
        inner = [p.parent for p in path.glob("*/config.yaml")]
        if not inner:
            raise FileNotFoundError(f"{path}: not a run folder (no config.yaml in it or in "
                                    "a folder inside it)")
        found += sorted(inner, key=_start_time)
    return found


def _start_time(run: Path) -> tuple[str, int]:
    """run.json's start (to the second), then config.yaml's time (written at the start)."""
    return read_run_info(run).get("started", ""), (run / "config.yaml").stat().st_mtime_ns


def load_run(path: Path, name: str) -> Run:
    evaluation = _read_json(path / "eval" / "metrics.json")
    if "top1" in evaluation and (path / "eval" / "confusion_matrix.csv").is_file():
        evaluation["baseline_top1"] = majority_share(path / "eval" / "confusion_matrix.csv")
    return Run(path, name, read_run_info(path), (path / "config.yaml").read_text(),
               metric_records(path, ignore=()), evaluation,
               _read_json(path / "robustness" / "summary.json"))


def majority_share(csv: Path) -> float:
    """Top-1 of always answering the most frequent true class, from `save_confusion`'s CSV."""
    rows = [line.split(",")[1:] for line in csv.read_text().splitlines()[1:] if line]
    counts = [sum(int(v) for v in row) for row in rows]  # per true class
    return max(counts) / max(sum(counts), 1)


def write_report(paths: list[str | Path], out: str | Path | None = None) -> Path:
    """Render the runs at `paths` into `out` (default: report.html in the first path)."""
    folders = find_runs(paths)
    names = [p.name for p in folders]
    names = [n if names.count(n) == 1 else f"{p.parent.name}/{n}" for p, n in zip(folders, names,
                                                                                 strict=True)]
    runs = [load_run(p, n) for p, n in zip(folders, names, strict=True)]
    out = Path(out) if out else Path(paths[0]) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(runs))
    return out


def render(runs: list[Run]) -> str:
    bodies = {"runs": _runs_table(runs), "metrics": _metrics_table(runs),
              "curves": _curves(runs), "reconstructions": _reconstructions(runs),
              "confusion": _pictures(runs, "eval/confusion_matrix.png", "confusion matrix",
                                     "No confusion matrix: `vitmae evaluate` writes one."),
              "segmentation": _pictures([r for r in runs if _task(r) == "segment"],
                                        "visualize.png", "image | ground truth | prediction",
                                        "No segmentation picture: `vitmae visualize` on a "
                                        "segmentation run writes one."),
              "robustness": _robustness(runs),
              "config": "".join(f"<details><summary>{_e(r.name)}</summary><pre>"
                                f"{_e(r.config_text)}</pre></details>" for r in runs)}
    title = "vitmae report: " + ", ".join(r.name for r in runs)
    sections = "".join(f'<section id="{key}"><h2>{_e(head)}</h2>{bodies[key]}</section>'
                       for key, head in SECTIONS.items())
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}'
            f"</title><style>{STYLE}</style></head><body><h1>{_e(title)}</h1>"
            f"<p>Written {time.strftime('%Y-%m-%d %H:%M')} from {len(runs)} run folder(s).</p>"
            f"{sections}</body></html>\n")


def _runs_table(runs: list[Run]) -> str:
    head = "<tr><th>run</th><th>stage</th><th>started</th><th>command</th><th>git commit</th>"\
           "<th>processes</th><th>environment</th><th>folder</th></tr>"
    rows = []
    for r in runs:
        i = r.info
        command = " ".join(shlex.quote(str(a)) for a in i.get("command", []))
        env = ", ".join(f"{k} {v}" for k, v in i.get("versions", {}).items())
        cells = [_e(r.name), _e(r.stage), _e(i.get("started", "?")),
                 f"<code>{_e(command)}</code>", _e(i.get("git_commit") or "?"),
                 _e(i.get("world_size", "?")), _e(env), f"<code>{_e(r.path.resolve())}</code>"]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def final_metrics(run: Run) -> list[tuple[str, str, float, float | None]]:
    """(source, metric, value, trivial baseline or None): the evaluation (else the last
    validation record) and the last monitor record."""
    last = {split: next((x for x in reversed(run.records) if x.get("split") == split), {})
            for split in ("val", "monitor")}
    sources = [("vitmae evaluate", run.evaluation) if run.evaluation
               else ("last validation", last["val"]), ("last monitor pass", last["monitor"])]
    rows = []
    for source, values in sources:
        for key, value in values.items():
            if key in NOT_METRICS or key.startswith("baseline_") or key.endswith(PICTURE) \
                    or not _is_number(value):
                continue
            rows.append((source, key, float(value), values.get(f"baseline_{key}")))
    return rows


def _metrics_table(runs: list[Run]) -> str:
    rows = [f"<tr><td>{_e(r.name)}</td><td>{_e(src)}</td><td>{_e(key)}</td>"
            f'<td class="num">{value:.4f}</td><td class="num">'
            f"{'-' if base is None else f'{base:.4f}'}</td></tr>"
            for r in runs for src, key, value, base in final_metrics(r)]
    if not rows:
        return '<p class="none">No metrics recorded yet.</p>'
    return ("<table><tr><th>run</th><th>from</th><th>metric</th><th>value</th>"
            f"<th>trivial baseline</th></tr>{''.join(rows)}</table><p>{_e(BASELINES)}.</p>")


def _curves(runs: list[Run]) -> str:
    figures = curve_figures([(r.name, r.stage, r.records) for r in runs])
    if not figures:
        return '<p class="none">No records in metrics.jsonl.</p>'
    return "".join(f'<figure class="wide">{_img(png, title)}<figcaption>{_e(title)}: a line '
                   "per run; training records against the optimizer step, validation and "
                   "monitor records against the epoch; dashed, the trivial baseline"
                   "</figcaption></figure>" for title, png in figures)


def _reconstructions(runs: list[Run]) -> str:
    parts = []
    for r in runs:
        grids = [(x["epoch"], x["recon_png"]) for x in r.records
                 if x.get("split") == "monitor" and "recon_png" in x]
        if len(grids) > MAX_GRIDS:  # evenly spaced, the first and the last among them
            step = (len(grids) - 1) / (MAX_GRIDS - 1)
            grids = [grids[round(i * step)] for i in range(MAX_GRIDS)]
        figs = [_figure(r.path / name, f"{r.name}, epoch {epoch}") for epoch, name in grids
                if (r.path / name).is_file()]
        if _task(r) == "pretrain" and (r.path / "visualize.png").is_file():
            figs.append(_figure(r.path / "visualize.png", f"{r.name}: vitmae visualize"))
        if figs:
            parts.append(f"<h3>{_e(r.name)}</h3><div class=\"pics\">{''.join(figs)}</div>")
    return "".join(parts) or ('<p class="none">No reconstruction grids: MAE pretraining '
                              "writes them with pretrain.recon_every &gt; 0.</p>")


def robustness_rows(summary: dict) -> list[tuple[str, float]]:
    """(measurement, value) of `vitmae robustness`'s summary: clean, the corruption mean, the
    mean per severity, each attack and radius."""
    rows = [("clean", summary["clean"])]
    if "corruption_mean" in summary:
        rows.append(("corruptions, mean", summary["corruption_mean"]))
        rows += [(f"corruptions, severity {s}", v) for s, v in summary["by_severity"].items()]
    grid = f", at {summary['attack_size']} px" if summary.get("attack_size") else ""
    for key, value in summary.items():
        if (attack := ATTACK_KEY.fullmatch(key)) is not None:
            rows.append((f"{attack[1]}, eps {attack[2]}/255{grid}", value))
    return rows


def _robustness(runs: list[Run]) -> str:
    parts = []
    for r in (r for r in runs if r.robustness):
        cells = "".join(f'<tr><td>{_e(what)}</td><td class="num">{value:.4f}</td></tr>'
                        for what, value in robustness_rows(r.robustness))
        figs = [_figure(r.path / "robustness" / name, f"{r.name}: {caption}")
                for name, caption in ((SEVERITY_PNG, "metric against severity and eps"),
                                      (EXAMPLES_PNG, "predictions, clean and perturbed"))
                if (r.path / "robustness" / name).is_file()]
        parts.append(f"<h3>{_e(r.name)}</h3><table><tr><th>measured</th><th>"
                     f"{_e(r.robustness['metric'])} on {_e(r.robustness['n'])} items</th></tr>"
                     f"{cells}</table><div class=\"pics wide\">{''.join(figs)}</div>")
    return "".join(parts) or ('<p class="none">No robustness records: `vitmae robustness '
                              '--checkpoint RUN` writes them.</p>')


def _pictures(runs: list[Run], name: str, caption: str, none: str) -> str:
    figs = [_figure(r.path / name, f"{r.name}: {caption}") for r in runs
            if (r.path / name).is_file()]
    return f"<div class=\"pics wide\">{''.join(figs)}</div>" if figs \
        else f'<p class="none">{_e(none)}</p>'


def _figure(path: Path, caption: str) -> str:
    return f"<figure>{_img(path.read_bytes(), caption)}<figcaption>{_e(caption)}</figcaption>" \
           "</figure>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _task(run: Run) -> str:
    """pretrain, or the fine-tuning task (classify, segment, multilabel)."""
    return "pretrain" if run.stage == "pretrain" \
        else str((yaml.safe_load(run.config_text) or {}).get("task", ""))


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _e(value) -> str:
    return html.escape(str(value))

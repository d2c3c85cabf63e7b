"""Pictures of `vitmae robustness`, drawn from its records with matplotlib's pyplot-free
`Figure` API:

- `severity_figure`: the metric against severity, a line per corruption coloured by its
  family (noise, blur, weather, digital: `GROUPS`), their mean as the thick line and the clean
  value dashed; beside it, when attacks were measured, the metric against eps per attack.
- `examples_figure`: a few test images as rows, clean, corrupted and attacked as columns,
  each panel titled with the model's prediction (`prediction_title`).
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure

from vitmae.data.palette import VOID

SEVERITY_PNG, EXAMPLES_PNG = "severity.png", "examples.png"  # in <run>/robustness/
FAMILY_MAPS = {"noise": "Reds", "blur": "Blues", "weather": "Greens", "digital": "Purples"}
MARK = {True: "\u2713", False: "\u2717"}  # check mark, ballot x (both in DejaVu Sans)
COLOUR = {True: "tab:green", False: "tab:red", None: "black"}  # of a title: right, wrong, -
MAX_LABELS = 3  # multi-label titles: the first few labels above 0.5, then "+n"

Panel = tuple[torch.Tensor, str, bool | None]  # picture (C, H, W) in [0, 1], title, right?


def corruption_colours(groups: dict[str, tuple[str, ...]]) -> dict[str, tuple]:
    """corruption -> RGBA: one colour map per family of `groups` (family -> corruptions, as
    `vitmae.robust.corruptions.GROUPS`), a darker shade per later member."""
    out = {}
    for family, names in groups.items():
        cmap = colormaps[FAMILY_MAPS[family]]
        for i, name in enumerate(names):
            out[name] = cmap(0.45 + 0.5 * i / max(len(names) - 1, 1))
    return out


def severity_figure(records: list[dict], metric: str,
                    groups: dict[str, tuple[str, ...]]) -> Figure:
    """The corruption panel (also when nothing but the clean value was measured) and the
    attack panel, each when `records` hold such records; `groups`: the corruption families,
    for the colours."""
    clean = next(r[metric] for r in records if r["kind"] == "clean")
    cor = [r for r in records if r["kind"] == "corruption"]
    att = [r for r in records if r["kind"] == "attack"]
    panels = [(draw, rows) for draw, rows in ((_corruption_panel, cor), (_attack_panel, att))
              if rows or (draw is _corruption_panel and not att)]
    fig = Figure(figsize=(1 + 5.5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for (draw, rows), ax in zip(panels, axes, strict=True):
        draw(ax, rows, metric, groups)
        ax.axhline(clean, color="black", ls="--", lw=1, label="clean")
        ax.set(ylabel=metric, ylim=(0, 1.02))
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _corruption_panel(ax, cor: list[dict], metric: str, groups: dict) -> None:
    """A line per corruption in its family's colours, the mean over them thick and black."""
    colours = corruption_colours(groups)
    for name in dict.fromkeys(r["corruption"] for r in cor):
        xy = sorted((r["severity"], r[metric]) for r in cor if r["corruption"] == name)
        ax.plot(*zip(*xy, strict=True), marker="o", ms=3, lw=1, color=colours[name],
                label=name)
    sevs = sorted({r["severity"] for r in cor})
    if cor:
        ax.plot(sevs, [np.mean([r[metric] for r in cor if r["severity"] == s]) for s in sevs],
                color="black", lw=3, marker="_", ms=24, mew=3,  # the marker: seen at one severity
                label="mean")
    ax.set(xlabel="severity", xticks=sevs, title="common corruptions")


def _attack_panel(ax, att: list[dict], metric: str, groups: dict) -> None:
    """A line per attack over its radii."""
    for name in dict.fromkeys(r["attack"] for r in att):
        xy = sorted((r["eps"] * 255, r[metric]) for r in att if r["attack"] == name)
        ax.plot(*zip(*xy, strict=True), marker="o", lw=1.5, label=name)
    radii = sorted({r["eps"] * 255 for r in att} | {0})
    ax.set(xlabel="eps (/255)", xticks=radii, xlim=(-0.05 * radii[-1], 1.08 * radii[-1] or 1),
           title="L-inf attacks")


def prediction_title(task: str, pred: torch.Tensor, truth: torch.Tensor,
                     classes: list[str] | None = None) -> tuple[str, bool | None]:
    """(title, right or None) of one prediction:
    classify: pred, truth () class indices -> "cat ✓" or "dog ✗ (true cat)";
    multilabel: pred (K,) scores, truth (K,) 0/1 -> the labels above 0.5, ✓ if exactly right;
    segment: pred, truth (H, W) labels -> the share of non-void pixels right (None)."""
    def name(k: int) -> str:
        return classes[k] if classes else str(k)

    if task == "segment":
        valid = truth != VOID
        acc = (pred == truth)[valid].float().mean().item() if valid.any() else float("nan")
        return f"{acc:.0%} of pixels right", None
    if task == "multilabel":
        on = (pred > 0.5).nonzero().flatten().tolist()
        right = bool(((pred > 0.5) == truth.bool()).all())
        names = ", ".join(name(k) for k in on[:MAX_LABELS]) or "none"
        extra = f" +{len(on) - MAX_LABELS}" if len(on) > MAX_LABELS else ""
        return f"{names}{extra} {MARK[right]}", right
    p, t = int(pred), int(truth)
    return (f"{name(p)} {MARK[True]}", True) if p == t \
        else (f"{name(p)} {MARK[False]} (true {name(t)})", False)


def examples_figure(columns: dict[str, list[Panel]]) -> Figure:
    """columns: name -> one Panel per row; the column's name heads its first row."""
    names = list(columns)
    rows = len(columns[names[0]])
    fig = Figure(figsize=(1.9 * len(names), 2.05 * rows))
    axes = fig.subplots(rows, len(names), squeeze=False)
    for j, name in enumerate(names):
        for i, (picture, title, right) in enumerate(columns[name]):
            img = picture.permute(1, 2, 0).cpu().numpy()  # (H, W, C)
            ax = axes[i][j]
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img,
                      cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(title, fontsize=8, color=COLOUR[right])
            if i == 0:  # the column's name above its first title
                ax.annotate(name, (0.5, 1), xytext=(0, 14), xycoords="axes fraction",
                            textcoords="offset points", ha="center", va="bottom", fontsize=9,
                            weight="bold")
    return fig

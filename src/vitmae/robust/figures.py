"""`save_robustness_figures`: the two pictures of a `vitmae robustness` measurement, in
`<run>/robustness/`: `severity.png` (from the records, `vitmae.viz.robustness.severity_figure`)
and `examples.png`: a few test items of the measured subset, clean, under up to four of the
measured corruptions (at the measured severity nearest 3) and under the strongest measured
attack (largest eps, PGD or SegPGD first), each panel titled with the model's prediction.

Only those few items are corrupted and attacked again. A corruption is seeded by (seed,
corruption, item), so its panels are the very images that were counted; the attack's random
start is drawn anew from `seed` for this one batch, so its panels are an instance of the
measured attack. Segmentation panels show the predicted label map in VOC's colours over the
image, after a column of the ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset

from vitmae.data.loader import make_loader
from vitmae.robust.attacked import attack_batch, seg_targets
from vitmae.robust.attacks import Normalized, to_pixels
from vitmae.robust.corrupted import CorruptedSet
from vitmae.robust.corruptions import GROUPS
from vitmae.train.engine import to_device
from vitmae.viz.figures import save_figure
from vitmae.viz.robustness import (
    EXAMPLES_PNG,
    MARK,
    SEVERITY_PNG,
    Panel,
    examples_figure,
    prediction_title,
    severity_figure,
)
from vitmae.viz.segmentation import overlay

ROWS = 4  # test items shown
PREFERRED = ("gaussian_noise", "motion_blur", "fog", "contrast", "jpeg_compression")
MAX_CORRUPTIONS = 4
SEVERITY = 3  # the middle of 1-5: visible, rarely destroyed


def shown_corruptions(records: list[dict]) -> list[tuple[str, int]]:
    """(corruption, severity) of the columns: the preferred ones measured, then the others
    measured, up to MAX_CORRUPTIONS; at the measured severity nearest SEVERITY."""
    cor = [r for r in records if r["kind"] == "corruption"]
    if not cor:
        return []
    measured = list(dict.fromkeys(r["corruption"] for r in cor))
    names = [n for n in PREFERRED if n in measured] + [n for n in measured if n not in PREFERRED]
    sev = min({r["severity"] for r in cor}, key=lambda s: (abs(s - SEVERITY), s))
    return [(n, sev) for n in names[:MAX_CORRUPTIONS]]


def strongest_attack(records: list[dict]) -> tuple[str, float] | None:
    """(attack, eps) of the largest eps measured (above 0), PGD or SegPGD before the others."""
    att = [r for r in records if r["kind"] == "attack" and r["eps"] > 0]
    if not att:
        return None
    best = max(att, key=lambda r: (r["eps"], r["attack"] in ("pgd", "segpgd")))
    return best["attack"], best["eps"]


def shown_items(ds, rows: int) -> list[int]:
    """Indices into the full split of `rows` items spread evenly over `ds` (a Subset of it,
    or the split itself)."""
    picks = np.unique(np.linspace(0, len(ds) - 1, min(rows, len(ds))).round().astype(int))
    return [ds.indices[i] if isinstance(ds, Subset) else int(i) for i in picks]


@torch.no_grad()
def describe(net: Normalized, task: str, x: torch.Tensor, y: torch.Tensor,
             classes: list[str] | None) -> list[Panel]:
    """pixels x (B, C, H, W) in [0, 1], targets y -> a Panel per item: the picture (with the
    predicted labels over it, for segmentation) and its prediction's title."""
    out = net(x).float().cpu()  # (B, K), or (B, K, H, W) for segmentation
    x, y = x.cpu(), y.cpu()
    if task == "segment":
        preds = out.argmax(1)  # (B, H, W)
        pictures = [overlay(img, p) for img, p in zip(x, preds, strict=True)]
    else:
        preds = torch.sigmoid(out) if task == "multilabel" else out.argmax(-1)  # (B, K), (B,)
        pictures = list(x)
    return [(pic, *prediction_title(task, p, t, classes))
            for pic, p, t in zip(pictures, preds, y, strict=True)]


def example_columns(model, task: str, full, ds, records: list[dict], device: torch.device,
                    seed: int, steps: int, rows: int = ROWS,
                    size: int | None = None) -> dict[str, list[Panel]]:
    """column name -> a Panel per shown item: (ground truth,) clean, corruptions, attack."""
    items, classes = shown_items(ds, rows), getattr(full, "classes", None)
    net = Normalized(model, full.mean, full.std).to(device)

    def batch_of(dataset) -> list:
        return to_device(next(iter(make_loader(Subset(dataset, items), len(items),
                                               train=False))), device)

    batch = batch_of(full)
    x = to_pixels(batch[0], net.mean, net.std)  # (B, C, H, W) in [0, 1]
    y = seg_targets(batch, x.shape[-2:]) if task == "segment" else batch[1]
    columns = {}
    if task == "segment":
        columns["ground truth"] = [(overlay(img, t), "", None)
                                   for img, t in zip(x.cpu(), y.cpu(), strict=True)]
    columns["clean"] = describe(net, task, x, y, classes)
    for name, sev in shown_corruptions(records):
        xc = to_pixels(batch_of(CorruptedSet(full, name, sev, seed))[0], net.mean, net.std)
        columns[f"{name} s{sev}"] = describe(net, task, xc, y, classes)
    if (strongest := strongest_attack(records)) is not None:
        attack, eps = strongest
        g = torch.Generator(device=device).manual_seed(seed)
        x_adv = attack_batch(net, task, batch, attack, eps, steps, seed, g, size)
        columns[f"{attack} {eps * 255:g}/255"] = describe(net, task, x_adv, y, classes)
    return columns


def save_robustness_figures(out: Path, records: list[dict], metric: str, model, task: str,
                            full, ds, device: torch.device, seed: int,
                            steps: int, size: int | None = None) -> list[Path]:
    """Write severity.png and examples.png into `out`; -> their paths."""
    n = records[0]["n"]
    paths = [out / SEVERITY_PNG, out / EXAMPLES_PNG]
    save_figure(severity_figure(records, metric, GROUPS), paths[0],
                f"{metric} on {n} test items: clean, corrupted, attacked")
    columns = example_columns(model, task, full, ds, records, device, seed, steps, size=size)
    marks = "" if task == "segment" else f" ({MARK[True]} right, {MARK[False]} wrong)"
    save_figure(examples_figure(columns), paths[1], f"{task}: predictions on "
                f"{len(columns['clean'])} of the {n} test items{marks}", fontsize=9)
    return paths

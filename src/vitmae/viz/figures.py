"""Pictures shared by the visualizers, the monitors and the evaluation: a grid of image
panels, a confusion matrix, one figure written to a file. Drawn with matplotlib's
pyplot-free `Figure` API: no process-wide backend is chosen or switched.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure


def denormalize(imgs: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, C, H, W) normalized -> (B, C, H, W) in [0, 1]."""
    m = torch.tensor(mean, dtype=imgs.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=imgs.dtype).view(1, -1, 1, 1)
    return (imgs * s + m).clamp(0, 1)


def save_figure(fig, path: Path, title: str = "", fontsize: int = 10) -> None:
    """Title, lay out and write `fig` to `path` (its folder made)."""
    if title:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def save_grid(panels: dict[str, torch.Tensor], path: Path, title: str = "") -> None:
    """panels: name -> (B, C, H, W) in [0, 1]; one row per image, one column per panel."""
    names = list(panels)
    B = next(iter(panels.values())).shape[0]
    fig = Figure(figsize=(2 * len(names), 2 * B))
    axes = fig.subplots(B, len(names), squeeze=False)
    for j, name in enumerate(names):
        for i in range(B):
            img = panels[name][i].permute(1, 2, 0).cpu().numpy()  # (H, W, C)
            ax = axes[i][j]
            ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img,
                      cmap="gray" if img.shape[-1] == 1 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    save_figure(fig, path, title, fontsize=10)


def save_confusion(cm: torch.Tensor, names: list[str], out: Path) -> None:
    """(K, K) counts, rows = truth, as CSV and as a PNG heat map."""
    rows = ["truth\\pred," + ",".join(names)]
    for name, row in zip(names, cm.tolist(), strict=True):
        rows.append(f"{name}," + ",".join(str(int(v)) for v in row))
    (out / "confusion_matrix.csv").write_text("\n".join(rows) + "\n")
    K = len(names)
    fig = Figure(figsize=(1 + 0.45 * K, 1 + 0.45 * K))
    ax = fig.subplots()
    ax.imshow(cm.numpy(), cmap="Blues")
    ax.set_xticks(range(K), names, rotation=90, fontsize=7)
    ax.set_yticks(range(K), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if K <= 12:
        for i in range(K):
            for j in range(K):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "confusion_matrix.png", dpi=120)

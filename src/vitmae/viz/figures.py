"""Pictures shared by the visualizers and the monitors: a grid of image panels, one figure
written to a file. matplotlib is imported only when a picture is drawn.
"""

from __future__ import annotations

from pathlib import Path

import torch


def denormalize(imgs: torch.Tensor, mean, std) -> torch.Tensor:
    """(B, C, H, W) normalized -> (B, C, H, W) in [0, 1]."""
    m = torch.tensor(mean, dtype=imgs.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=imgs.dtype).view(1, -1, 1, 1)
    return (imgs * s + m).clamp(0, 1)


def save_figure(fig, path: Path, title: str = "", fontsize: int = 10) -> None:
    """Title, lay out, write `fig` to `path` (its folder made) and close it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_grid(panels: dict[str, torch.Tensor], path: Path, title: str = "") -> None:
    """panels: name -> (B, C, H, W) in [0, 1]; one row per image, one column per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(panels)
    B = next(iter(panels.values())).shape[0]
    fig, axes = plt.subplots(B, len(names), figsize=(2 * len(names), 2 * B), squeeze=False)
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

"""`run_visualize`: pictures of what a checkpoint does.

For an MAE checkpoint, the reconstruction grid of the MAE paper's Figure 2, one row per image:
original | masked | reconstruction | reconstruction with the visible patches pasted back; for
volumes, three rows per volume: its middle slices across the first, second and third axis.
For a segmentation checkpoint, image | ground truth | prediction (see `vitmae.viz.segmentation`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitmae.config import Config
from vitmae.data import build_dataset
from vitmae.data.volume_seg_items import mae_items
from vitmae.errors import UsageError
from vitmae.models.mae import build_mae, patchify, unpatchify
from vitmae.models.patch3d import patchify3d, unpatchify3d
from vitmae.runs.checkpoint import read_weights
from vitmae.viz.figures import denormalize, save_grid
from vitmae.viz.segmentation import save_segmentation_grid
from vitmae.weights.keys import is_mae


@torch.no_grad()
def mae_reconstruction(model, imgs: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """imgs (B, C, H, W) normalized -> the four panels, each (B, C, H, W), normalized;
    volumes (B, C, D, H, W) -> four (B, C, D, H, W) panels."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    _, pred, mask = model(imgs, generator=g)  # (B, L, p*p*C), (B, L)
    p, C = model.patch_size, imgs.shape[1]
    grid = model.grid_size  # (h, w), or (d, h, w) for volumes
    cut, join = (patchify, unpatchify) if imgs.ndim == 4 else (patchify3d, unpatchify3d)
    patches = cut(imgs, p)  # (B, L, p^2 C or p^3 C)
    if model.norm_pix_loss:  # the prediction is in per-patch normalized units: undo with truth
        mean = patches.mean(dim=-1, keepdim=True)
        std = (patches.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        pred = pred * std + mean
    m = mask.unsqueeze(-1)  # (B, L, 1)
    return {
        "original": imgs,
        "masked": join(patches * (1 - m), p, C, grid),
        "reconstruction": join(pred, p, C, grid),
        "reconstruction + visible": join(patches * (1 - m) + pred * m, p, C, grid),
    }


def middle_slices(panels: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Volume panels (B, C, D, H, W) -> (3B, C, ., .): for each volume its middle slices
    across the first, second and third axis, in that order; 2-D panels as they are."""
    def cut(v: torch.Tensor) -> torch.Tensor:
        if v.ndim == 4:
            return v
        D, H, W = v.shape[2:]
        if not D == H == W:
            raise ValueError(f"middle slices of a cube, got {D}x{H}x{W}")
        return torch.stack([v[:, :, D // 2], v[:, :, :, H // 2], v[:, :, :, :, W // 2]],
                           dim=1).flatten(0, 1)  # (B, 3, C, S, S) -> (3B, C, S, S)
    return {k: cut(v) for k, v in panels.items()}


def run_visualize(cfg: Config, checkpoint: str | Path, out: str | Path, n: int = 8) -> Path:
    """Write the picture for `checkpoint` (MAE or segmentation) to `out` (a .png path)."""
    out = Path(out)
    ds = build_dataset(cfg.data, cfg.data.val_split, train=False)
    state = read_weights(checkpoint)
    if is_mae(state):
        ds = mae_items(ds, cfg.data.img_size)
    batch = [ds[i] for i in range(min(n, len(ds)))]
    imgs = torch.stack([b[0] for b in batch])  # (n, C, H, W)
    if is_mae(state):
        model = build_mae(cfg.model, cfg.data.img_size, ds.in_chans)
        model.load_state_dict(state)
        panels = middle_slices(mae_reconstruction(model, imgs, seed=cfg.run.seed))
        panels = {k: denormalize(v, ds.mean, ds.std) for k, v in panels.items()}
        across = ", middle slices across each axis" if imgs.ndim == 5 else ""
        save_grid(panels, out, f"MAE, mask ratio {model.mask_ratio:.2f}{across}")
        return out
    if cfg.task == "segment":
        return save_segmentation_grid(cfg, state, ds, batch, out)
    raise UsageError(f"{checkpoint}: visualize needs an MAE checkpoint (decoder weights) or a "
                     f"segmentation one (task: segment); this is a {cfg.task} checkpoint")

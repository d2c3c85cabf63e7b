"""`run_visualize`: pictures of what a checkpoint does.

For an MAE checkpoint, the reconstruction grid of the MAE paper's Figure 2, one row per image:
original | masked | reconstruction | reconstruction with the visible patches pasted back.
For a segmentation checkpoint, image | ground truth | prediction (see `vitmae.viz.segmentation`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitmae.config import Config
from vitmae.data import build_dataset
from vitmae.errors import UsageError
from vitmae.models.mae import build_mae, patchify, unpatchify
from vitmae.runs.checkpoint import read_weights
from vitmae.viz.figures import denormalize, save_grid
from vitmae.viz.segmentation import save_segmentation_grid
from vitmae.weights.keys import is_mae


@torch.no_grad()
def mae_reconstruction(model, imgs: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """imgs (B, C, H, W) normalized -> the four panels, each (B, C, H, W), normalized."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    _, pred, mask = model(imgs, generator=g)  # (B, L, p*p*C), (B, L)
    p, C = model.patch_size, imgs.shape[1]
    hw = model.grid_size
    if model.norm_pix_loss:  # the prediction is in per-patch normalized units: undo with truth
        target = patchify(imgs, p)  # (B, L, p*p*C)
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
        pred = pred * std + mean
    m = mask.unsqueeze(-1)  # (B, L, 1)
    patches = patchify(imgs, p)
    return {
        "original": imgs,
        "masked": unpatchify(patches * (1 - m), p, C, hw),
        "reconstruction": unpatchify(pred, p, C, hw),
        "reconstruction + visible": unpatchify(patches * (1 - m) + pred * m, p, C, hw),
    }


def run_visualize(cfg: Config, checkpoint: str | Path, out: str | Path, n: int = 8) -> Path:
    """Write the picture for `checkpoint` (MAE or segmentation) to `out` (a .png path)."""
    out = Path(out)
    ds = build_dataset(cfg.data, cfg.data.val_split, train=False)
    state = read_weights(checkpoint)
    batch = [ds[i] for i in range(min(n, len(ds)))]
    imgs = torch.stack([b[0] for b in batch])  # (n, C, H, W)
    if is_mae(state):
        model = build_mae(cfg.model, cfg.data.img_size, ds.in_chans)
        model.load_state_dict(state)
        panels = mae_reconstruction(model, imgs, seed=cfg.run.seed)
        panels = {k: denormalize(v, ds.mean, ds.std) for k, v in panels.items()}
        save_grid(panels, out, f"MAE, mask ratio {model.mask_ratio:.2f}")
        return out
    if cfg.task == "segment":
        return save_segmentation_grid(cfg, state, ds, batch, out)
    raise UsageError(f"{checkpoint}: visualize needs an MAE checkpoint (decoder weights) or a "
                     f"segmentation one (task: segment); this is a {cfg.task} checkpoint")

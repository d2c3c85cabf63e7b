"""Pictures of volumes: the MAE reconstruction panels of a 3-D MAE, cut into the middle slices
across each axis (the pretraining monitor and `vitmae visualize` drawing them:
tests/cli/test_volumes_cli.py)."""

from __future__ import annotations

import torch

from vitmae.config import ModelConfig
from vitmae.models.mae import build_mae
from vitmae.models.patch3d import patchify3d
from vitmae.viz.reconstruction import mae_reconstruction, middle_slices


def test_middle_slices_cut_each_axis_at_its_middle():
    S = 6
    z, y, x = torch.meshgrid(*(torch.arange(S),) * 3, indexing="ij")
    vol = (100 * z + 10 * y + x).float()[None, None].expand(2, 1, S, S, S)  # (2, 1, S, S, S)
    flat = torch.zeros(2, 1, 4, 4)
    out = middle_slices({"v": vol, "flat": flat})
    assert out["v"].shape == (6, 1, S, S) and out["flat"] is flat  # 2-D panels untouched
    first, second, third = out["v"][0, 0], out["v"][1, 0], out["v"][2, 0]
    assert (first // 100 == 3).all()  # z = S // 2 everywhere on the first slice
    assert ((second // 10) % 10 == 3).all() and (third % 10 == 3).all()
    assert torch.equal(out["v"][3:], out["v"][:3])  # the second volume's rows follow


def test_3d_reconstruction_panels_keep_the_visible_patches():
    torch.manual_seed(0)
    cfg = ModelConfig(arch="vit_micro_patch4", embed_dim=48, num_heads=2, decoder_embed_dim=24,
                      decoder_num_heads=2, decoder_depth=1, spatial_dims=3)
    model = build_mae(cfg, 8, 1)
    vols = torch.randn(2, 1, 8, 8, 8)
    panels = mae_reconstruction(model, vols, seed=1)
    assert all(v.shape == vols.shape for v in panels.values())
    _, _, mask = model(vols, generator=torch.Generator().manual_seed(1))  # the same masking
    kept = (mask == 0)[..., None]  # (B, L, 1)
    masked, pasted = (patchify3d(panels[k], 4) for k in ("masked", "reconstruction + visible"))
    original = patchify3d(vols, 4)
    assert torch.equal(torch.where(kept, pasted, original), original)  # visible patches exact
    assert (masked[~kept.expand_as(masked)] == 0).all() and torch.equal(
        masked[kept.expand_as(masked)], original[kept.expand_as(original)])

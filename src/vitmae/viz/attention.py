"""`run_attention_visualize`: attention maps over the images, one row per image.

Columns: the image as the model sees it | attention rollout | the last block's attention of
the class token, one column per head (`vitmae.infer.attention`). Each map is upsampled from the
patch grid to the image, scaled to its own range (min 0, max 1) and drawn over the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from vitmae.config import Config
from vitmae.data import build_dataset
from vitmae.errors import UsageError
from vitmae.infer.attention import attention_weights, rollout, token_attention
from vitmae.infer.image_files import list_images
from vitmae.infer.model import InferenceModel
from vitmae.models.vit import VisionTransformer
from vitmae.viz.figures import denormalize, save_figure


def attention_panels(model: InferenceModel, imgs: torch.Tensor) -> dict[str, torch.Tensor]:
    """imgs (n, C, S, S) normalized -> {"image": (n, C, S, S) in [0, 1], "rollout" and
    "head k": (n, S, S) maps in [0, 1]}."""
    encoder = model.encoder
    weights = attention_weights(encoder, imgs)
    maps = {"rollout": rollout(encoder, weights)}  # (n, h, w)
    heads = token_attention(encoder, weights)  # (n, nh, h, w)
    maps |= {f"head {k + 1}": heads[:, k] for k in range(heads.shape[1])}
    S = imgs.shape[-2:]
    panels = {"image": denormalize(imgs, model.preprocess.mean, model.preprocess.std)}
    for name, m in maps.items():
        up = F.interpolate(m[:, None], size=S, mode="bilinear", align_corners=False)[:, 0]
        lo = up.flatten(1).amin(1).view(-1, 1, 1)
        hi = up.flatten(1).amax(1).view(-1, 1, 1)
        panels[name] = (up - lo) / (hi - lo).clamp_min(1e-12)  # (n, S, S) in [0, 1]
    return panels


def save_attention_grid(panels: dict[str, torch.Tensor], path: Path, title: str = "") -> Path:
    """One row per image: the image, then each map drawn over it."""
    images = panels["image"]
    names = list(panels)
    n = images.shape[0]
    fig = Figure(figsize=(1.8 * len(names), 1.8 * n))
    axes = fig.subplots(n, len(names), squeeze=False)
    for i in range(n):
        img = images[i].permute(1, 2, 0).numpy()  # (S, S, C)
        grey = img.shape[-1] == 1
        for j, name in enumerate(names):
            ax = axes[i][j]
            ax.imshow(img[..., 0] if grey else img, cmap="gray" if grey else None, vmin=0,
                      vmax=1)
            if name != "image":
                ax.imshow(panels[name][i].numpy(), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
    save_figure(fig, path, title, fontsize=9)
    return path


def load_images(model: InferenceModel, images: Sequence[str] | None, cfg: Config | None,
                n: int) -> torch.Tensor:
    """The first n of the named image files, else of the run's evaluation split ->
    (n, C, S, S) normalized."""
    if images:
        pre = model.preprocess
        return torch.stack([pre(pre.read(p)) for p in list_images(images)[:n]])
    if cfg is None:
        raise UsageError(f"{model.source}: not a run folder, so there is no data set to take "
                         f"images from; name them with --images")
    ds = build_dataset(cfg.data, cfg.data.val_split, train=False)
    return torch.stack([ds[i][0] for i in range(min(n, len(ds)))])  # (n, C, S, S)


def run_attention_visualize(model: InferenceModel, out: str | Path,
                            images: Sequence[str] | None = None, cfg: Config | None = None,
                            n: int = 8) -> Path:
    """Write the attention picture of `model` on up to n images to `out` (a .png path)."""
    if model.encoder is None:
        raise UsageError(f"{model.source}: attention maps need the PyTorch model (a run folder "
                         f"or a weights file), not an exported one")
    if not isinstance(model.encoder, VisionTransformer):
        raise UsageError(f"{model.source}: attention maps read a ViT's tokens; this model is "
                         f"a CNN")
    if model.preprocess.volumes:
        raise UsageError(f"{model.source}: attention maps are drawn over 2-D images; this "
                         f"model takes volumes")
    panels = attention_panels(model, load_images(model, images, cfg, n))
    P = model.encoder.num_prefix_tokens
    query = "class token" if P else "mean of the patch queries"
    return save_attention_grid(panels, Path(out), f"rollout | last block, {query}, per head")

"""`run_embed`: the encoder's features of the user's images, for search or clustering.

One row per readable image in a float32 `.npy` of shape (N, D), and beside it a CSV (the same
name with `.csv`) of the image paths in the same row order. Features are the encoder's
output tokens pooled as `--pool` says, by default as the model pools them: the class token
(`cls`) or the mean of the patch tokens (`mean`), normalised as the model normalises what its
head sees (the final norm, or `fc_norm` after pooling in timm's avg-pool layout).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vitmae.errors import UsageError
from vitmae.infer.image_files import image_batches
from vitmae.infer.model import InferenceModel
from vitmae.models.vit import VisionTransformer

POOLS = {"cls": "token", "mean": "avg"}  # --pool -> VisionTransformer.pool's `how`


def default_pool(encoder: VisionTransformer) -> str:
    return "cls" if encoder.global_pool == "token" else "mean"


@torch.inference_mode()
def features(encoder: VisionTransformer, x: torch.Tensor, pool: str) -> torch.Tensor:
    """x (B, C, S, S) -> (B, D): the class token or the mean of the patch tokens."""
    if pool == "cls" and encoder.num_prefix_tokens == 0:
        raise UsageError("--pool cls: this model has no class token; use --pool mean")
    pooled = encoder.pool(encoder.forward_features(x), POOLS[pool])  # (B, D)
    return pooled.clone()  # (B, D) of its own: the class token is a view of all the tokens


def run_embed(model: InferenceModel, paths: Sequence[Path], out: str | Path,
              pool: str | None = None, batch_size: int = 32
              ) -> tuple[int, list[tuple[Path, str]]]:
    """Write the features of `paths` to `out` (.npy) and the paths to `out` with .csv.
    -> (images done, [(path, reason) of the files that could not be read])."""
    if model.encoder is None:
        raise UsageError(f"{model.source}: embed needs the PyTorch model (a run folder or a "
                         f"weights file), not an exported one")
    if not isinstance(model.encoder, VisionTransformer):
        raise UsageError(f"{model.source}: embed reads a ViT's tokens; this model is a CNN")
    pool = pool or default_pool(model.encoder)
    if pool not in POOLS:
        raise UsageError(f"--pool: expected one of {', '.join(POOLS)}, got {pool!r}")
    out = Path(out)
    if out.suffix != ".npy":
        raise UsageError(f"--out {out}: expected a .npy file name")
    failed: list[tuple[Path, str]] = []
    rows, done = [], []
    for batch in image_batches(paths, model.preprocess, batch_size, failed):
        rows.append(features(model.encoder, batch.x, pool).float().numpy())
        done.extend(batch.paths)
    D = model.encoder.embed_dim
    feats = np.concatenate(rows) if rows else np.zeros((0, D), np.float32)  # (N, D)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, feats)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path"])
        w.writerows([str(p)] for p in done)
    return len(done), failed

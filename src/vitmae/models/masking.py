"""Random subsets of patch tokens, drawn per image by sorting uniform noise.

Two users: MAE's masking (`random_masking`, He et al. 2022), which keeps
int(L * (1 - mask_ratio)) patches and also returns the mask and the inverse permutation the
decoder needs, and PatchDropout (`kept_ids`, Liu et al. 2023), which keeps
round(L * (1 - drop)) patches, at least one, and needs only their indices. Shapes as in
`vitmae.models.mae`: B batch, L patches, L_keep kept patches; ids are patch indices 0..L-1.
"""

from __future__ import annotations

import torch


def shuffled_ids(B: int, L: int, device=None, generator: torch.Generator | None = None,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
    """-> (B, L): a random permutation of 0..L-1 per row, ascending noise first. The noise is
    drawn on the generator's device (so a CPU generator seeds a GPU run alike), or given."""
    if noise is None:
        gen_device = generator.device if generator is not None else device
        noise = torch.rand(B, L, generator=generator, device=gen_device).to(device)  # (B, L)
    return noise.argsort(dim=1)  # (B, L)


def random_masking(B: int, L: int, mask_ratio: float, device=None,
                   generator: torch.Generator | None = None,
                   noise: torch.Tensor | None = None):
    """Per-sample random masking by sorting uniform noise (drawn here, or given as (B, L), as
    HuggingFace's ViTMAE takes it, so that two implementations can mask alike).

    -> ids_keep (B, L_keep), mask (B, L) with 1 = removed, ids_restore (B, L).
    """
    L_keep = int(L * (1 - mask_ratio))
    ids_shuffle = shuffled_ids(B, L, device, generator, noise)  # small noise is kept
    ids_restore = ids_shuffle.argsort(dim=1)  # inverse permutation
    ids_keep = ids_shuffle[:, :L_keep]  # (B, L_keep)
    mask = torch.ones(B, L, device=device)
    mask[:, :L_keep] = 0  # in shuffled order: the first L_keep are kept
    mask = mask.gather(1, ids_restore)  # (B, L) back in patch order
    return ids_keep, mask, ids_restore


def kept_ids(B: int, L: int, drop: float, device=None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """PatchDropout's kept patches: -> ids_keep (B, L_keep), L_keep = round(L * (1 - drop)),
    at least 1, a uniform random subset per image."""
    L_keep = max(1, round(L * (1 - drop)))
    return shuffled_ids(B, L, device, generator)[:, :L_keep]  # (B, L_keep)

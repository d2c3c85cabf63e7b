"""Loading a pretrained encoder into a fine-tuning model, with the exact key check of MAE.

MAE's fine-tuning loads non-strictly and then asserts the exact set of missing keys; here the
expected set is passed in and any other missing or unexpected key is an error that lists the
keys. Accepts our MAE checkpoints (`encoder.*`) and public MAE / timm ones (no prefix; the
decoder keys are dropped). A position embedding of another grid size is resampled; a RoPE
table is the model's own (it follows from the grid), but must be present on both sides.
"""

from __future__ import annotations

import math

import torch

from vitmae.errors import CheckpointError
from vitmae.models.pos_embed import resample_pos_embed
from vitmae.models.vit import VisionTransformer
from vitmae.weights.keys import encoder_state


def load_encoder(encoder: VisionTransformer, state: dict[str, torch.Tensor],
                 expected_missing: set[str] | None = None, log=print,
                 keep_head: bool = False) -> set[str]:
    """Load `state` into `encoder`; returns the missing keys.

    Raises CheckpointError if the missing keys differ from `expected_missing` (default: the
    head's), if any key is unexpected, or if shapes differ (other than a resampled grid).
    The state's classification head is dropped (a new task) unless `keep_head`.
    """
    state = encoder_state(state)
    if not keep_head:
        state.pop("head.weight", None), state.pop("head.bias", None)
    own = encoder.state_dict()
    pos = state.get("pos_embed")
    if pos is not None and pos.shape != own["pos_embed"].shape and pos.shape[-1] == own[
            "pos_embed"].shape[-1]:
        h, w = encoder.patch_embed.grid_size
        old = int(math.isqrt(pos.shape[1] - encoder.num_prefix_tokens))
        log(f"pos_embed: resampling the {old}x{old} position grid of the checkpoint to {h}x{w}")
        state["pos_embed"] = resample_pos_embed(pos, (h, w), encoder.num_prefix_tokens)
    if "rope_table" in state and "rope_table" in own:
        state["rope_table"] = own["rope_table"]  # derived from the grid, not learned
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
           for k, v in state.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise CheckpointError("the checkpoint's architecture does not match the model; "
                              "mismatched keys and shapes:\n  " + "\n  ".join(bad))
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    expect = {k for k in own if k.startswith("head.") and not keep_head} \
        if expected_missing is None \
        else expected_missing
    if set(missing) != expect or unexpected:
        raise CheckpointError(
            f"encoder keys do not match: missing {sorted(missing)} (expected {sorted(expect)}), "
            f"unexpected {sorted(unexpected)}")
    return set(missing)

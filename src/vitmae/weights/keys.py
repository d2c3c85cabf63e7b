"""The key conventions of a state dict, written once.

A vitmae MAE or segmentation model keeps its encoder under `ENCODER_PREFIX` (the module
attribute `encoder`); a classification model is the encoder itself (no prefix). MAE's decoder,
ours and the official code's alike, is every key under `DECODER_KEYS`; a state dict with such
keys is an MAE checkpoint (a pretraining run, not a fine-tuned model).
"""

from __future__ import annotations

import torch

ENCODER_PREFIX = "encoder."
DECODER_KEYS = ("decoder_", "mask_token")

State = dict[str, torch.Tensor]


def is_mae(state: State) -> bool:
    """Whether `state` holds an MAE decoder: an MAE pretraining checkpoint."""
    return any(k.startswith(DECODER_KEYS) for k in state)


def has_encoder_prefix(state: State) -> bool:
    """Whether `state` keeps its encoder under 'encoder.' (a vitmae MAE or segmentation run)."""
    return any(k.startswith(ENCODER_PREFIX) for k in state)


def split_decoder(state: State) -> tuple[State, State]:
    """(everything but the MAE decoder, the MAE decoder's keys)."""
    return ({k: v for k, v in state.items() if not k.startswith(DECODER_KEYS)},
            {k: v for k, v in state.items() if k.startswith(DECODER_KEYS)})


def unprefix(state: State) -> State:
    """The encoder's keys without 'encoder.', the MAE decoder kept, anything else under another
    prefix (a segmentation head) dropped; a state without the prefix as it is."""
    if not has_encoder_prefix(state):
        return state
    return {k.removeprefix(ENCODER_PREFIX): v for k, v in state.items()
            if k.startswith(ENCODER_PREFIX)} | split_decoder(state)[1]


def encoder_state(state: State) -> State:
    """The encoder's weights of an MAE, segmentation or ViT state dict, without 'encoder.'."""
    return split_decoder(unprefix(state))[0]

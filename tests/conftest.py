"""Shared fixtures: micro models, and the CPU and Hypothesis settings every test runs under.

Tests use tiny models on a shared 2-core machine: one intra-op thread is faster than two
there (the second thread mostly waits for a busy core), and results do not depend on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import torch
from hypothesis import settings

from vitmae.config import ModelConfig
from vitmae.models.mae import MaskedAutoencoder, build_mae
from vitmae.models.vit import VisionTransformer, build_vit

torch.set_num_threads(1)

# Property-based tests draw the same examples on every run (seeded from each test's own
# source): a red suite is then reproducible and never depends on a lucky draw, and no example
# database is written. HYPOTHESIS_PROFILE=explore draws new examples when hunting for bugs.
settings.register_profile("derandomized", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))

# The micro variant (D=32, 2 blocks, 2 heads, p=4) with a small decoder and no drop-path.
MICRO = dict(arch="vit_micro_patch4", drop_path=0.0, decoder_embed_dim=32, decoder_depth=1,
             decoder_num_heads=2)


@pytest.fixture
def micro_vit() -> Callable[..., VisionTransformer]:
    """make(img_size=16, in_chans=1, num_classes=10, **ModelConfig fields) -> a seeded ViT."""

    def make(img_size=16, in_chans: int = 1, num_classes: int = 10, seed: int = 0,
             **model) -> VisionTransformer:
        torch.manual_seed(seed)
        return build_vit(ModelConfig(**{**MICRO, **model}), img_size, in_chans, num_classes)

    return make


@pytest.fixture
def micro_mae() -> Callable[..., MaskedAutoencoder]:
    """make(img_size=16, in_chans=1, **ModelConfig fields) -> a seeded MAE."""

    def make(img_size=16, in_chans: int = 1, seed: int = 0, **model) -> MaskedAutoencoder:
        torch.manual_seed(seed)
        return build_mae(ModelConfig(**{**MICRO, **model}), img_size, in_chans)

    return make


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for `python -m vitmae` children: the source tree, one thread each."""
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}

"""Named model sizes (a registry of variants, as timm's) and the CNN baselines beside them,
torch-free so that the config can check them without importing the models."""

from __future__ import annotations

import typing
from typing import Literal

from vitmae.errors import ConfigError

# Model sizes as data. The *_patch4 variants are for 28-32 px images on a CPU; the standard
# ones follow timm / MAE. mlp_ratio is 4 throughout.
VARIANTS: dict[str, dict[str, int]] = {
    "vit_micro_patch4": dict(patch_size=4, embed_dim=32, depth=2, num_heads=2),  # tests
    "vit_mini_patch4": dict(patch_size=4, embed_dim=128, depth=6, num_heads=4),  # MNIST on CPU
    "vit_tiny_patch4": dict(patch_size=4, embed_dim=192, depth=12, num_heads=3),  # CIFAR on CPU
    "vit_small_patch4": dict(patch_size=4, embed_dim=384, depth=12, num_heads=6),
    "vit_mini_patch8": dict(patch_size=8, embed_dim=128, depth=6, num_heads=4),  # VOC on CPU
    "vit_tiny_patch16": dict(patch_size=16, embed_dim=192, depth=12, num_heads=3),
    "vit_small_patch16": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vit_base_patch16": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    "vit_large_patch16": dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16),
    "vit_huge_patch14": dict(patch_size=14, embed_dim=1280, depth=32, num_heads=16),
}

# model.arch values that are torchvision CNNs (vitmae.models.cnn), not ViTs: trained from
# scratch by the same engine and tasks, as a baseline for the ViT rows
CNN_ARCHS = ("resnet18",)
# with model.spatial_dims=3: the torchvision video model (3-D convolutions throughout) that
# stands for each CNN_ARCHS name on volumes, as the ViT variants keep their names in 3-D
CNN_3D = {"resnet18": "r3d_18"}
# model.cnn_stem: torchvision's stem ("imagenet"), or the CIFAR stem (vitmae.models.cnn)
CnnStem = Literal["imagenet", "cifar"]
CNN_STEMS = typing.get_args(CnnStem)

FROM_WEIGHTS = "from_weights"  # model.arch: every size from the pretrained file
SIZE_KEYS = ("patch_size", "embed_dim", "depth", "num_heads")


def check_grid(img_size: int | tuple[int, ...], patch_size: int) -> None:
    """The image (H, W), or volume (D, H, W), is cut into whole patches: the rule for the
    config checks and the patch embeddings alike; an int is a square image."""
    sizes = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if any(s % patch_size for s in sizes):
        raise ConfigError(f"data.img_size: {'x'.join(map(str, sizes))} is not divisible by the "
                          f"patch size {patch_size}")


def check_stem_patch(patch_size: int) -> None:
    """A convolutional stem halves the image once per stage down to the patch size."""
    if patch_size < 2 or patch_size & (patch_size - 1):
        raise ConfigError(f"model.stem: conv needs a power-of-2 patch size >= 2 (one stride-2 "
                          f"stage per halving), got {patch_size}")


def resolve_sizes(arch: str, overrides: dict[str, int | None]) -> dict[str, int]:
    """The variant's sizes with the non-None `overrides` applied; for `from_weights` all four
    must be given (the pretrained file's). Raises ConfigError naming the key."""
    if arch == FROM_WEIGHTS:
        missing = [k for k in SIZE_KEYS if overrides.get(k) is None]
        if missing:
            raise ConfigError(f"model.arch=from_weights: {', '.join(missing)} are read from the "
                              f"pretrained weights, which have not been read yet")
        return {k: int(overrides[k]) for k in SIZE_KEYS}
    if arch not in VARIANTS:
        raise ConfigError(f"model.arch: unknown variant {arch!r} (known: {', '.join(VARIANTS)}, "
                          f"{', '.join(CNN_ARCHS)}, or {FROM_WEIGHTS})")
    sizes = dict(VARIANTS[arch])
    sizes.update({k: v for k, v in overrides.items() if k in SIZE_KEYS and v is not None})
    return sizes

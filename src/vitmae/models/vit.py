"""Vision Transformer encoder (Dosovitskiy et al. 2021), written for MAE.

Parameter names follow timm's `VisionTransformer` (`patch_embed.proj`, `cls_token`,
`pos_embed`, `blocks.N.attn.qkv`, `norm`, `head`) so that public MAE checkpoints load with a
small key map. Shapes use the vocabulary of `vitmae.models.mae`: B batch, C channels, H, W
image, p patch, h, w = H//p, W//p, L = h*w, L_keep kept patches, D width, K classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitmae.errors import ConfigError
from vitmae.models.blocks import Block, init_weights
from vitmae.models.conv_stem import ConvStem
from vitmae.models.masking import kept_ids
from vitmae.models.patch3d import PatchEmbed3d
from vitmae.models.pos_embed import sincos_grid
from vitmae.models.rope import axial_rope, select
from vitmae.variants import SIZE_KEYS, check_grid, resolve_sizes


def resolve_arch(model_cfg) -> dict[str, int]:
    """The variant's sizes with any explicit overrides from a ModelConfig applied."""
    return resolve_sizes(model_cfg.arch, {k: getattr(model_cfg, k) for k in SIZE_KEYS})


def _pair(x: int | Sequence[int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, L, D): a p x p convolution of stride p, computed as one matmul.

    The weight keeps timm's conv shape (D, C, p, p); the forward cuts the image into patches
    and multiplies by the flattened weight, so that MAE embeds only the kept patches (4x less
    work at mask ratio 0.75, and no gather of D-wide tokens).
    """

    def __init__(self, img_size, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        H, W = _pair(img_size)
        check_grid((H, W), patch_size)
        self.img_size, self.patch_size = (H, W), patch_size
        self.grid_size = (H // patch_size, W // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W), ids_keep: (B, L_keep) or None -> (B, L_keep, D) or (B, L, D)."""
        if x.shape[-2:] != self.img_size:
            raise ValueError(f"expected images of {self.img_size}, got {tuple(x.shape[-2:])}")
        B, C = x.shape[:2]
        (h, w), p = self.grid_size, self.patch_size
        x = x.reshape(B, C, h, p, w, p)  # (B, C, h, p, w, p)
        x = x.permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * p * p)  # (B, L, C*p*p) conv order
        if ids_keep is not None:
            x = x.take_along_dim(ids_keep.unsqueeze(-1), dim=1)  # (B, L_keep, C*p*p)
        return F.linear(x, self.proj.weight.flatten(1), self.proj.bias)  # (B, L_keep, D)


class VisionTransformer(nn.Module):
    """ViT with an optional class token and 2-D sin-cos position embeddings, fixed (MAE) or
    learned from that start (`pos_embed="learned"`, as timm's and HuggingFace's ViTs); with
    `rope=True`, rotary ones too in every attention layer. `stem="conv"` makes it a hybrid:
    tokens from a strided convolutional stem (`vitmae.models.conv_stem`) instead of patches.
    An `img_size` of three sizes (D, H, W) makes it a ViT of volumes: cubic patches
    (`vitmae.models.patch3d`) and the 3-D sin-cos table, the same blocks and heads.

    `forward_features(x, ids_keep)` runs the encoder on the kept patches only (MAE);
    `forward_head` pools (mean of patch tokens, or the class token), applies `fc_norm` when
    the model has one (timm's avg-pool layout: then `norm` is the identity) and classifies.
    """

    def __init__(self, img_size=224, patch_size: int = 16, in_chans: int = 3,
                 num_classes: int = 0, embed_dim: int = 768, depth: int = 12,
                 num_heads: int = 12, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 global_pool: str = "avg", rope: bool = False, qkv_bias: bool = True,
                 norm_eps: float = 1e-6, class_token: bool = True, pos_embed: str = "sincos",
                 fc_norm: bool = False, stem: str = "patch", stem_width: int = 32,
                 patch_drop: float = 0.0):
        super().__init__()
        if stem not in ("patch", "conv"):
            raise ConfigError(f"stem: expected 'patch' or 'conv', got {stem!r}")
        if pos_embed not in ("sincos", "learned"):
            raise ConfigError(f"pos_embed: expected 'sincos' or 'learned', got {pos_embed!r}")
        if global_pool == "token" and not class_token:
            raise ConfigError("global_pool='token' needs a class token")
        if rope and not class_token:
            raise ConfigError("rope: the rotary table has a class-token row; needs a class token")
        volume = not isinstance(img_size, int) and len(img_size) == 3
        if volume and rope:
            raise ConfigError("volumes (3-D img_size) have the 3-D sin-cos table: no rope")
        self.embed_dim, self.depth, self.num_heads = embed_dim, depth, num_heads
        self.in_chans, self.num_classes, self.global_pool = in_chans, num_classes, global_pool
        self.patch_drop = patch_drop
        self.num_prefix_tokens = int(class_token)
        if stem == "conv":
            self.patch_embed = ConvStem(tuple(img_size) if volume else _pair(img_size),
                                        patch_size, in_chans, embed_dim, stem_width)
        elif volume:
            self.patch_embed = PatchEmbed3d(img_size, patch_size, in_chans, embed_dim)
        else:
            self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        grid = self.patch_embed.grid_size  # (h, w), or (d, h, w) for volumes
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        pos = sincos_grid(embed_dim, grid)  # (L, D)
        if class_token:
            pos = torch.cat([torch.zeros(1, embed_dim), pos])  # (1+L, D)
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(pos.unsqueeze(0))  # (1, P+L, D), sin-cos start
        else:  # fixed (MAE); persistent so that checkpoints carry it like timm's
            self.register_buffer("pos_embed", pos.unsqueeze(0))  # (1, P+L, D)
        # Persistent, so that an encoder trained with RoPE and one without do not load into
        # each other silently: the key is missing or unexpected.
        self.register_buffer("rope_table",
                             axial_rope(embed_dim // num_heads, *grid) if rope else None)
        rates = torch.linspace(0, drop_path, depth).tolist()  # stochastic depth grows with depth
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, r, qkv_bias, norm_eps)
                                    for r in rates)
        self.norm = nn.Identity() if fc_norm else nn.LayerNorm(embed_dim, eps=norm_eps)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=norm_eps) if fc_norm else None
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_weights)
        # As MAE: the patch projection is initialised like a linear layer, not a conv.
        nn.init.xavier_uniform_(self.patch_embed.proj.weight.view(embed_dim, -1))
        if class_token:
            nn.init.normal_(self.cls_token, std=0.02)
        if num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=2e-5)  # MAE fine-tuning head init

    @property
    def patch_size(self) -> int:
        return self.patch_embed.patch_size

    def embed(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W), ids_keep: (B, L_keep) or None -> (B, P+L_keep, D) with positions,
        P = num_prefix_tokens (1 with a class token, else 0)."""
        return self.add_positions(self.patch_embed(x, ids_keep), ids_keep)

    def add_positions(self, tokens: torch.Tensor,
                      ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, L_keep, D) -> (B, P+L_keep, D): position embeddings added, the class
        token (with its position) in front."""
        pos = self.pos_embed[0, self.num_prefix_tokens:]  # (L, D)
        if ids_keep is not None:
            pos = pos[ids_keep]  # (B, L_keep, D)
        tokens = tokens + pos  # (B, L_keep, D)
        if self.cls_token is None:
            return tokens
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)  # (B,1,D)
        return torch.cat([cls, tokens], dim=1)  # (B, 1+L_keep, D)

    def rope(self, ids_keep: torch.Tensor | None = None) -> torch.Tensor | None:
        """The RoPE rows of the class token and the kept patches (all when ids_keep is None),
        (2, B or 1, 1, 1+L_keep, hd); None without RoPE."""
        return None if self.rope_table is None else select(self.rope_table, ids_keep)

    def forward_features(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, P+L_keep, D), normalised; L_keep = L when ids_keep is None.
        Drop-path draws come from `generator` (None: torch's default)."""
        rope = self.rope(ids_keep)
        x = self.embed(x, ids_keep)
        for block in self.blocks:
            x = block(x, rope, generator)
        return self.norm(x)

    def block_tokens(self, x: torch.Tensor, indices: Sequence[int],
                              generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Patch tokens after the given blocks (0-based; -1 = last, normalised); drop-path
        draws come from `generator`.

        x: (B, C, H, W) -> list of (B, L, D), class token dropped (Segmenter, SETR-MLA).
        """
        return self.run_blocks(self.embed(x), indices, generator)

    def block_tokens_and_stem_maps(self, x: torch.Tensor, indices: Sequence[int],
                                   generator: torch.Generator | None = None
                                   ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """As `block_tokens`, plus the convolutional stem's maps for heads with skip
        connections: x (B, C, H, W) -> ([(B, L, D)], [(B, c_i, H/2^(i+1), W/2^(i+1))])."""
        if not isinstance(self.patch_embed, ConvStem):
            raise ConfigError("the encoder has no convolutional stem (model.stem=conv)")
        maps = self.patch_embed.features(x)
        tokens = self.add_positions(self.patch_embed.project(maps[-1]))  # (B, P+L, D)
        return self.run_blocks(tokens, indices, generator), maps

    def run_blocks(self, x: torch.Tensor, indices: Sequence[int],
                   generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """x (B, P+L, D), embedded -> the patch tokens after the given blocks, (B, L, D) each."""
        depth = len(self.blocks)
        wanted = {i % depth for i in indices}
        outs: dict[int, torch.Tensor] = {}
        rope = self.rope()
        for i, block in enumerate(self.blocks):
            x = block(x, rope, generator)
            if i in wanted:
                outs[i] = self.norm(x) if i == depth - 1 else x
        return [outs[i % depth][:, self.num_prefix_tokens:] for i in indices]  # each (B, L, D)

    def pool(self, x: torch.Tensor, how: str | None = None) -> torch.Tensor:
        """x: (B, P+L, D) -> (B, D): mean of the patch tokens ("avg") or the class token
        ("token"), as `how` says (default: the model's own `global_pool`), then `fc_norm`
        where the model has one."""
        how = how or self.global_pool
        if how == "token" and self.num_prefix_tokens == 0:
            raise ConfigError("pooling the class token: this model has none")
        pooled = x[:, self.num_prefix_tokens:].mean(dim=1) if how == "avg" \
            else x[:, 0]  # (B, D)
        return pooled if self.fc_norm is None else self.fc_norm(pooled)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, P+L, D) -> (B, K) logits (or (B, D) features without a head)."""
        return self.head(self.pool(x))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, K) logits; `generator` draws the drop-path masks and, in
        training with patch_drop > 0, which patch tokens each image keeps."""
        ids_keep = self.kept_patches(x, generator) if self.training and self.patch_drop else None
        return self.forward_head(self.forward_features(x, ids_keep, generator))

    def kept_patches(self, x: torch.Tensor, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
        """x: (B, C, H, W) -> ids_keep (B, L_keep): a uniform random subset of the L patches
        per image, L_keep = round(L * (1 - patch_drop)), at least 1 (PatchDropout)."""
        return kept_ids(x.shape[0], self.patch_embed.num_patches, self.patch_drop, x.device,
                        generator)  # (B, L_keep)


def layer_id(name: str, depth: int) -> int:
    """Layer index for layer-wise lr decay: embeddings 0, block i -> i+1, the rest depth+1."""
    if name.startswith(("cls_token", "pos_embed", "patch_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def build_vit(model_cfg, img_size, in_chans: int, num_classes: int = 0,
              drop_path: float | None = None) -> VisionTransformer:
    """A VisionTransformer from a ModelConfig (variant name + overrides)."""
    arch = resolve_arch(model_cfg)
    m = model_cfg
    if m.spatial_dims == 3 and isinstance(img_size, int):
        img_size = (img_size,) * 3  # volumes: a cube of data.img_size voxels a side
    return VisionTransformer(
        img_size=img_size, in_chans=in_chans, num_classes=num_classes,
        drop_path=m.drop_path if drop_path is None else drop_path, global_pool=m.global_pool,
        rope=m.rope, mlp_ratio=m.mlp_ratio, qkv_bias=m.qkv_bias, norm_eps=m.norm_eps,
        class_token=m.class_token, pos_embed=m.pos_embed, fc_norm=m.fc_norm, stem=m.stem,
        stem_width=m.stem_width, patch_drop=m.patch_drop, **arch)

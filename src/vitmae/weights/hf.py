"""HuggingFace ViT / ViTMAE state dicts <-> the common (timm / MAE) layout.

Reads both key styles: the one in published checkpoints (transformers 4:
`encoder.layer.N.attention.attention.query`) and transformers 5's (`layers.N.attention.q_proj`);
writes the published one, which both versions load. Separate q, k, v projections become
timm's fused `qkv` (rows q, then k, then v) and back. Model classes: `ViTModel` /
`ViTMAEModel` (no prefix), `ViTForImageClassification` / `ViTMAEForPreTraining` (`vit.`,
plus `classifier.` or `decoder.`). `ViTModel`'s pooler (dense + tanh) has no counterpart and
is dropped.
"""

from __future__ import annotations

import re

import torch

from vitmae.weights.arch import UnknownLayout
from vitmae.weights.keys import DECODER_KEYS

# Block sub-modules: HuggingFace (published names, transformers 5 names) -> timm.
BLOCK_PARTS = {
    "attention.attention.query": "q", "attention.attention.key": "k",
    "attention.attention.value": "v", "attention.output.dense": "attn.proj",
    "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
    "attention.q_proj": "q", "attention.k_proj": "k", "attention.v_proj": "v",
    "attention.o_proj": "attn.proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
    "layernorm_before": "norm1", "layernorm_after": "norm2",
}
TOP = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
       "embeddings.patch_embeddings.projection": "patch_embed.proj", "layernorm": "norm",
       "classifier": "head"}
ENC_BLOCK = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")
DEC_BLOCK = re.compile(r"^(?:decoder_layers|decoder_encoder\.layer)\.(\d+)\.(.+)\.(weight|bias)$")
DROPPED = ("pooler.", "vit.pooler.")


def is_hf(state: dict) -> bool:
    return any(k.startswith(("embeddings.patch_embeddings", "vit.embeddings.patch_embeddings"))
               for k in state)


def _block_key(prefix: str, index: str, part: str, kind: str) -> str:
    if part not in BLOCK_PARTS:
        raise KeyError(part)
    return f"{prefix}.{index}.{BLOCK_PARTS[part]}.{kind}"


def hf_to_common(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A HuggingFace ViT / ViTMAE state dict -> the common layout (decoder keys as MAE's)."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith(DROPPED):
            continue
        name = key[len("vit."):] if key.startswith("vit.") else key
        decoder = name.startswith("decoder.")
        if decoder:
            name = name[len("decoder."):]
        m = (DEC_BLOCK if decoder else ENC_BLOCK).match(name)
        try:
            if m:
                new = _block_key("decoder_blocks" if decoder else "blocks", *m.groups())
            elif decoder:  # decoder_embed, mask_token, decoder_pos_embed, decoder_norm/pred
                new = name
            else:
                stem, _, kind = name.rpartition(".")
                new = f"{TOP[stem]}.{kind}" if stem in TOP else TOP[name]
        except KeyError:
            unknown.append(key)
            continue
        out[new] = value
    if unknown:
        raise UnknownLayout(f"unknown HuggingFace ViT keys: {', '.join(unknown[:8])}"
                            f"{' ...' if len(unknown) > 8 else ''}")
    return fuse_qkv(out)


def fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """blocks.N.{q,k,v}.{weight,bias} -> blocks.N.attn.qkv.{weight,bias} (rows q, k, v)."""
    out = {k: v for k, v in state.items() if not re.search(r"\.[qkv]\.(weight|bias)$", k)}
    for key in state:
        m = re.match(r"^(.*)\.q\.(weight|bias)$", key)
        if m:
            base, kind = m.groups()
            parts = [state[f"{base}.{n}.{kind}"] for n in "qkv"]
            out[f"{base}.attn.qkv.{kind}"] = torch.cat(parts)  # (3D, D) or (3D,)
    return out


HF_BLOCK = {"attn.proj": "attention.output.dense", "mlp.fc1": "intermediate.dense",
            "mlp.fc2": "output.dense", "norm1": "layernorm_before", "norm2": "layernorm_after"}
QKV = ("attention.attention.query", "attention.attention.key", "attention.attention.value")


def common_to_hf(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The common layout -> HuggingFace's published names; `prefix` is 'vit.' for the
    ForImageClassification / ForPreTraining classes, '' for the bare models."""
    inverse_top = {v: k for k, v in TOP.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = re.match(r"^(blocks|decoder_blocks)\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m:
            group, i, part, kind = m.groups()
            base = f"{prefix}encoder.layer.{i}" if group == "blocks" \
                else f"decoder.decoder_layers.{i}"
            if part == "attn.qkv":
                for name, chunk in zip(QKV, value.chunk(3), strict=True):  # rows q, k, v
                    out[f"{base}.{name}.{kind}"] = chunk.clone()
            else:
                out[f"{base}.{HF_BLOCK[part]}.{kind}"] = value
        elif key.startswith(DECODER_KEYS):
            out[f"decoder.{key}"] = value
        elif key.startswith("head."):
            out[f"classifier.{key.split('.')[-1]}"] = value
        else:
            stem, _, kind = key.rpartition(".")
            name = f"{inverse_top[stem]}.{kind}" if stem in inverse_top else inverse_top[key]
            out[prefix + name] = value
    return out

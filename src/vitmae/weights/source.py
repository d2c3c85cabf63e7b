"""Read pretrained weights of any supported format into the common layout.

The format is detected from the file's keys, never its name:
- a vitmae run folder or checkpoint (`encoder.*` keys for MAE and segmentation runs, plain
  ViT names for classification runs); the run's config.yaml gives the head count;
- a timm `VisionTransformer` state dict (`.safetensors`, `.pth` / `.bin`, bare or under
  'model' / 'state_dict'), with or without a head, class token or `fc_norm`;
- an official MAE checkpoint ({'model': ...}, timm names plus `decoder_*` keys when `_full`);
- a HuggingFace folder (`config.json` + `model.safetensors` or `pytorch_model.bin`) of
  `ViTMAEForPreTraining`, `ViTMAEModel`, `ViTModel` or `ViTForImageClassification`.
Normalisation stats come from the safetensors metadata ('mean' / 'std', as timm's hub files
carry them), a HuggingFace `preprocessor_config.json`, or a vitmae run's config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from vitmae.runs.checkpoint import CheckpointError, read_state_file, read_weights
from vitmae.runs.folder import run_dir_of
from vitmae.variants import VARIANTS
from vitmae.weights.arch import UnknownLayout, infer_arch
from vitmae.weights.hf import hf_to_common, is_hf
from vitmae.weights.keys import has_encoder_prefix, is_mae, split_decoder, unprefix


@dataclass
class Source:
    """Weights in the common layout with what is known about them."""

    path: Path
    format: str  # vitmae | timm | mae | hf
    encoder: dict[str, torch.Tensor]  # timm names, head included when the file has one
    decoder: dict[str, torch.Tensor]  # MAE decoder keys ({} when the file has none)
    arch: dict  # infer_arch's, num_heads filled in when the source knows it
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    labels: list[str] | None = None  # class names of the head, when the source has them
    notes: list[str] = field(default_factory=list)  # what was dropped or assumed, for the log


def _stats(text: str | None) -> tuple[float, ...] | None:
    return tuple(float(x) for x in text.split(",")) if text else None


def _read_hf(folder: Path) -> Source:
    config = json.loads((folder / "config.json").read_text())
    files = [folder / n for n in ("model.safetensors", "pytorch_model.bin")
             if (folder / n).is_file()]
    if not files:
        raise CheckpointError(f"{folder}: a HuggingFace folder (config.json) without weights: "
                              f"expected model.safetensors or pytorch_model.bin beside it")
    if config.get("model_type") not in ("vit", "vit_mae"):
        raise CheckpointError(f"{folder}/config.json: model_type {config.get('model_type')!r}; "
                              f"expected 'vit' or 'vit_mae'")
    state, meta = read_state_file(files[0])
    try:
        common = hf_to_common(state)
    except ValueError as e:
        raise CheckpointError(f"{files[0]}: {e}") from None
    src = _split(files[0], "hf", common)
    src.arch["num_heads"] = int(config["num_attention_heads"])
    src.arch["norm_eps"] = float(config.get("layer_norm_eps", 1e-12))
    if "decoder_num_attention_heads" in config:
        src.arch["decoder_num_heads"] = int(config["decoder_num_attention_heads"])
    if src.arch["num_classes"]:
        id2label = config.get("id2label") or {}
        src.labels = [id2label.get(str(i), str(i)) for i in range(src.arch["num_classes"])]
        src.arch["global_pool"] = "token"  # ViTForImageClassification: the class token
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        p = json.loads(pre.read_text())
        src.mean, src.std = tuple(p.get("image_mean") or ()), tuple(p.get("image_std") or ())
    if "vit.pooler.dense.weight" in state or "pooler.dense.weight" in state:
        src.notes.append("dropped ViTModel's pooler (dense + tanh; no counterpart here)")
    return src


def _split(path: Path, fmt: str, state: dict[str, torch.Tensor]) -> Source:
    """Separate encoder and decoder keys and read the architecture."""
    encoder, decoder = split_decoder(state)
    try:
        arch = infer_arch(encoder)
    except UnknownLayout as e:
        keys = ", ".join(list(state)[:6])
        raise CheckpointError(
            f"{path}: not a ViT checkpoint in any supported format ({e}). Expected a vitmae "
            f"run or checkpoint, a timm VisionTransformer state dict, an official MAE "
            f"checkpoint or a HuggingFace ViT / ViTMAE folder; the file's first keys: "
            f"{keys or '(none)'}") from None
    if "fc_norm.weight" in encoder:
        arch["global_pool"] = "avg"
    elif arch["num_classes"]:
        arch["global_pool"] = "token" if arch["class_token"] else "avg"
    return Source(path, fmt, encoder, decoder, arch)


def _run_config(path: Path) -> dict | None:
    """The config.yaml of the vitmae run folder holding `path`, if any."""
    folder = run_dir_of(path)
    return None if folder is None else yaml.safe_load((folder / "config.yaml").read_text())


def read_source(path: str | Path) -> Source:
    """Detect the format of `path` from its keys and read it into the common layout."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file():
        return _read_hf(path)
    if path.is_dir() or (path.name == "model.safetensors" and _run_config(path.parent)):
        return _read_vitmae(path)
    state, meta = read_state_file(path)
    if is_hf(state):
        try:
            src = _split(path, "hf", hf_to_common(state))
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
        src.notes.append("HuggingFace weights without their config.json: the head count is "
                         "guessed; give the folder to read it")
    elif has_encoder_prefix(state):
        src = _split(path, "vitmae", unprefix(state))
    else:
        src = _split(path, "mae" if is_mae(state) else "timm", state)
    src.mean, src.std = _stats(meta.get("mean")), _stats(meta.get("std"))
    return src


def _read_vitmae(path: Path) -> Source:
    """A vitmae run folder or checkpoint: weights through the verified reader, sizes and
    normalisation from the run's config.yaml."""
    src = _split(path, "vitmae", unprefix(read_weights(path)))
    cfg = _run_config(path if path.is_dir() else path.parent)
    if cfg:
        model = cfg.get("model", {})
        base = VARIANTS.get(model.get("arch"), {})
        src.arch["num_heads"] = model.get("num_heads") or base.get("num_heads")
        if src.decoder and model.get("decoder_num_heads"):
            src.arch["decoder_num_heads"] = model["decoder_num_heads"]
        for key in ("norm_eps", "pos_embed", "global_pool"):
            if key in model:
                src.arch[key] = model[key]
        data = cfg.get("data", {})
        if data.get("mean"):
            src.mean, src.std = tuple(data["mean"]), tuple(data["std"])
    return src

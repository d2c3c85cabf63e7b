"""Write a vitmae run's weights in timm's, HuggingFace's or the official MAE layout.

- `timm`: one safetensors file of timm `VisionTransformer` names, with the normalisation as
  metadata ('mean', 'std'), which `timm.create_model(name, pretrained=True,
  pretrained_cfg_overlay=dict(file=OUT), ...)` loads strictly (MAE runs: the encoder only).
- `hf`: a folder (`config.json`, `model.safetensors`, `preprocessor_config.json`) that
  `ViTMAEForPreTraining.from_pretrained` (MAE runs) or `ViTForImageClassification.
  from_pretrained` (classification runs that pool the class token) loads.
- `mae`: `{'model': state}` in a `.pth` file, as the official MAE code saves it (MAE runs:
  `_full`, the decoder included).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from vitmae.errors import UserError
from vitmae.runs.checkpoint import read_weights
from vitmae.runs.folder import run_dir_of
from vitmae.variants import CNN_ARCHS, VARIANTS
from vitmae.weights.arch import guess_num_heads, infer_arch
from vitmae.weights.hf import common_to_hf
from vitmae.weights.keys import has_encoder_prefix, is_mae, split_decoder, unprefix

FORMATS = ("timm", "hf", "mae")


class ExportError(UserError, ValueError):
    """A run that the chosen format cannot represent."""


def _run_folder(path: Path) -> Path:
    folder = run_dir_of(path)
    if folder is None:
        raise ExportError(f"{path}: not a vitmae run folder or checkpoint (no config.yaml)")
    return folder


def run_state(path: str | Path) -> tuple[dict, dict[str, torch.Tensor], str]:
    """(config dict, weights in the common layout, kind: 'mae' | 'classify' | 'segment')."""
    path = Path(path)
    cfg = yaml.safe_load((_run_folder(path) / "config.yaml").read_text())
    arch = cfg.get("model", {}).get("arch")
    if arch in CNN_ARCHS:
        raise ExportError(f"{path}: a {arch} run has no ViT weights to write; its "
                          f"model.safetensors holds torchvision's names (encoder.*, head.*)")
    raw = read_weights(path)
    kind = "mae" if is_mae(raw) else "segment" if has_encoder_prefix(raw) else "classify"
    state = unprefix(raw)
    if any(k.startswith("patch_embed.stem.") for k in state):
        raise ExportError(f"{path}: a hybrid model's convolutional stem (model.stem=conv) has no "
                          f"counterpart in timm, HuggingFace or MAE")
    if "rope_table" in state:
        raise ExportError(f"{path}: a model with rotary position embeddings (model.rope) has no "
                          f"counterpart in timm, HuggingFace or MAE")
    return cfg, state, kind


def export_run(path: str | Path, fmt: str, out: str | Path,
               labels: list[str] | None = None) -> Path:
    """Write the run (or checkpoint) at `path` to `out` in format `fmt`; -> the path written."""
    if fmt not in FORMATS:
        raise ExportError(f"--to: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    cfg, state, kind = run_state(path)
    out = Path(out)
    if kind == "segment" and fmt != "timm":
        raise ExportError(f"{path}: a segmentation run exports its encoder to timm only "
                          f"(HuggingFace and MAE have no layout for its decode head)")
    if fmt == "timm":
        encoder = split_decoder(state)[0]
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in encoder.items()}, str(out),
                  metadata=_stats_metadata(cfg))
        return out
    if fmt == "mae":
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": state}, out)
        return out
    return write_hf(state, cfg, kind, out, labels)


def _stats_metadata(cfg: dict) -> dict[str, str]:
    data = cfg.get("data", {})
    meta = {"format": "pt", "model": f"vitmae {cfg['model']['arch']}"}
    if data.get("mean"):
        meta["mean"] = ",".join(str(v) for v in data["mean"])
        meta["std"] = ",".join(str(v) for v in data["std"])
    return meta


def hf_config(state: dict[str, torch.Tensor], cfg: dict, kind: str,
              labels: list[str] | None) -> dict:
    """The config.json of the HuggingFace model that holds `state`."""
    a, m = infer_arch(state), cfg["model"]
    heads = m.get("num_heads") or _variant_heads(m) or guess_num_heads(a["embed_dim"],
                                                                       a["patch_size"])
    if not a["class_token"] or a["fc_norm"]:
        raise ExportError("HuggingFace's ViT has a class token and no fc_norm; this model "
                          "differs: export it to timm instead")
    out = dict(hidden_size=a["embed_dim"], num_hidden_layers=a["depth"],
               num_attention_heads=heads, intermediate_size=round(a["embed_dim"] * a["mlp_ratio"]),
               hidden_act="gelu", image_size=a["img_size"], patch_size=a["patch_size"],
               num_channels=a["in_chans"], qkv_bias=a["qkv_bias"],
               layer_norm_eps=float(m.get("norm_eps", 1e-6)), hidden_dropout_prob=0.0,
               attention_probs_dropout_prob=0.0, initializer_range=0.02)
    if kind == "mae":
        Dd = state["decoder_embed.weight"].shape[0]
        depth = len({k.split(".")[1] for k in state if k.startswith("decoder_blocks.")})
        out.update(model_type="vit_mae", architectures=["ViTMAEForPreTraining"],
                   decoder_hidden_size=Dd, decoder_num_hidden_layers=depth,
                   decoder_num_attention_heads=m["decoder_num_heads"],
                   decoder_intermediate_size=state["decoder_blocks.0.mlp.fc1.weight"].shape[0],
                   mask_ratio=m["mask_ratio"], norm_pix_loss=m["norm_pix_loss"])
        return out
    if m.get("global_pool", "avg") != "token":
        raise ExportError("HuggingFace's ViTForImageClassification classifies the class token; "
                          "this run pools the mean of the patch tokens (model.global_pool=avg): "
                          "export it to timm instead")
    K = a["num_classes"]
    names = labels if labels and len(labels) == K else [f"LABEL_{i}" for i in range(K)]
    out.update(model_type="vit", architectures=["ViTForImageClassification"],
               id2label={str(i): n for i, n in enumerate(names)},
               label2id={n: i for i, n in enumerate(names)})
    if cfg.get("task") == "multilabel":
        out["problem_type"] = "multi_label_classification"
    return out


def _variant_heads(m: dict) -> int | None:
    return VARIANTS.get(m.get("arch"), {}).get("num_heads")


def write_hf(state: dict[str, torch.Tensor], cfg: dict, kind: str, out: Path,
             labels: list[str] | None = None) -> Path:
    """A HuggingFace folder: config.json, model.safetensors, preprocessor_config.json."""
    config = hf_config(state, cfg, kind, labels)
    out.mkdir(parents=True, exist_ok=True)
    weights = common_to_hf(state, prefix="vit.")
    save_file({k: v.contiguous() for k, v in weights.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    data = cfg.get("data", {})
    if data.get("mean"):
        size = config["image_size"]
        pre = dict(image_processor_type="ViTImageProcessor", do_resize=True,
                   size={"height": size, "width": size}, do_normalize=True, do_rescale=True,
                   rescale_factor=1 / 255, image_mean=list(data["mean"]),
                   image_std=list(data["std"]))
        (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    return out

"""Starting a run from pretrained weights of any format (`vitmae.weights`).

`adopt(cfg, path)` reads the file, fills the model's sizes and layout from it when
`model.arch=from_weights` (or checks a named variant against it, listing each difference) and
takes its normalisation stats into `data.mean` / `data.std`, so the run's config.yaml records
what the weights need. `load_into(encoder, source)` then fits the weights to the model (patch
size, channels, position grid) and loads them with MAE's exact missing-key check.
"""

from __future__ import annotations

import torch

from vitmae.config import Config, ConfigError, validate
from vitmae.models.conv_stem import ConvStem
from vitmae.models.vit import VisionTransformer
from vitmae.runs.checkpoint import CheckpointError
from vitmae.variants import FROM_WEIGHTS, SIZE_KEYS, resolve_sizes
from vitmae.weights import Source, read_source
from vitmae.weights.adapt import adapt_channels, resize_patch_weight
from vitmae.weights.arch import guess_num_heads
from vitmae.weights.encoder import load_encoder
from vitmae.weights.keys import split_decoder

DISTILL = "decoder_distill"  # MaskedAutoencoder's feature-distillation map

LAYOUT = ("mlp_ratio", "qkv_bias", "class_token", "rope", "stem", "spatial_dims")
# What a format's position table is: learned (timm, HuggingFace ViT) or fixed sin-cos (MAE).
POS_EMBED = {"timm": "learned", "hf": "learned", "mae": "sincos", "vitmae": "sincos"}


def adopt(cfg: Config, path: str, log=print) -> Source:
    """Read `path`, make cfg.model agree with it and take its normalisation; -> the source."""
    return adopt_source(cfg, read_source(path), log)


def adopt_source(cfg: Config, src: Source, log=print) -> Source:
    """`adopt` for weights already read (e.g. to set data.img_size from them first)."""
    path, a, m = src.path, src.arch, cfg.model
    for note in src.notes:
        log(f"{path}: {note}")
    heads = a["num_heads"]
    if heads is None:
        heads = guess_num_heads(a["embed_dim"], a["patch_size"])
        if m.arch == FROM_WEIGHTS and m.num_heads is None:
            log(f"{path}: the weights do not record the head count; assuming {heads} "
                f"(head width {a['embed_dim'] // heads}; set model.num_heads if it differs)")
    if m.arch == FROM_WEIGHTS:
        m.patch_size = m.patch_size or a["patch_size"]  # an explicit one is resampled to
        m.embed_dim, m.depth = a["embed_dim"], a["depth"]
        m.num_heads = m.num_heads or heads
        for key in LAYOUT + ("fc_norm",):
            setattr(m, key, a[key])
        m.stem_width = a["stem_width"] or m.stem_width
        m.pos_embed = a.get("pos_embed") or (
            "sincos" if src.decoder else POS_EMBED[src.format])
        m.norm_eps = float(a.get("norm_eps", 1e-6))
        m.global_pool = a.get("global_pool", m.global_pool)
        if src.decoder:
            fit_decoder(cfg, src)
    else:
        check_layout(cfg, src, heads if a["num_heads"] is not None else None)
    if cfg.data.mean is None and src.mean:
        cfg.data.mean, cfg.data.std = list(src.mean), list(src.std)
        log(f"normalisation from the weights: mean {cfg.data.mean}, std {cfg.data.std}")
    validate(cfg)
    return src


def fit_decoder(cfg: Config, src: Source) -> None:
    """model.decoder_* from the source's MAE decoder (the head count from its config when it
    has one, else a head width of 32 as in MAE's and HuggingFace's decoders)."""
    d, m = src.decoder, cfg.model
    m.decoder_embed_dim = d["decoder_embed.weight"].shape[0]
    m.decoder_depth = len({k.split(".")[1] for k in d if k.startswith("decoder_blocks.")})
    m.decoder_num_heads = src.arch.get("decoder_num_heads") or max(1, m.decoder_embed_dim // 32)


def check_layout(cfg: Config, src: Source, heads: int | None) -> None:
    """ConfigError listing every way the preset's model differs from the weights' (other than
    patch size and image size, which are resampled)."""
    a, m = src.arch, cfg.model
    sizes = resolve_sizes(m.arch, {k: getattr(m, k) for k in SIZE_KEYS})
    want = {"embed_dim": a["embed_dim"], "depth": a["depth"], "num_heads": heads,
            **{k: a[k] for k in LAYOUT}}
    have = {**sizes, **{k: getattr(m, k) for k in LAYOUT}}
    diff = [f"model.{k}: the preset has {have[k]}, the weights {v}"
            for k, v in want.items() if v is not None and have[k] != v]
    if a["stem"] == m.stem == "conv" and a["stem_width"] != m.stem_width:
        diff.append(f"model.stem_width: the preset has {m.stem_width}, the weights "
                    f"{a['stem_width']}")
    if a["fc_norm"] and not m.fc_norm:
        diff.append("model.fc_norm: the preset has False, the weights True")
    if diff:
        raise ConfigError(f"{src.path}: the weights do not fit the preset's model "
                          f"({m.arch}):\n  " + "\n  ".join(diff) +
                          f"\n(model.arch={FROM_WEIGHTS} takes every size from the weights)")


def load_into(encoder: VisionTransformer, src: Source, keep_head: bool = False,
              log=print) -> set[str]:
    """Load the source's encoder into `encoder`, fitted to its patch size and channels;
    the file's head is kept only with `keep_head`. -> the missing (new) keys."""
    state = dict(src.encoder)
    if not fit_stem(encoder, src, state, log):  # a patch projection: resampled, adapted
        w = state["patch_embed.proj.weight"]  # (D, C, p, p)
        if w.shape[-1] != encoder.patch_size:
            log(f"patch_embed: resampling the {w.shape[-1]}x{w.shape[-1]} patch projection to "
                f"{encoder.patch_size}x{encoder.patch_size} (FlexiViT pseudo-inverse resize)")
            w = resize_patch_weight(w, encoder.patch_size)
        if w.shape[1] != encoder.in_chans:
            log(f"patch_embed: {w.shape[1]}-channel weights for {encoder.in_chans}-channel "
                f"data: {'summed over' if encoder.in_chans == 1 else 'spread over'} the channels")
            w = adapt_channels(w, encoder.in_chans)
        state["patch_embed.proj.weight"] = w
    expected = set()
    if "head.weight" in state and not keep_head:
        log(f"dropped the weights' {state['head.weight'].shape[0]}-class head (a new one "
            f"is trained)")
    if not keep_head:
        state.pop("head.weight", None), state.pop("head.bias", None)
        expected |= {k for k in encoder.state_dict() if k.startswith("head.")}
    if encoder.fc_norm is not None and "fc_norm.weight" not in state:
        state.pop("norm.weight", None), state.pop("norm.bias", None)  # MAE's fine-tuning
        expected |= {"fc_norm.weight", "fc_norm.bias"}
    return load_encoder(encoder, state, expected_missing=expected, log=log, keep_head=keep_head)


def fit_stem(encoder: VisionTransformer, src: Source, state: dict[str, torch.Tensor],
             log=print) -> bool:
    """Refuse a stem that does not fit the encoder's (a conv stem and a patch projection do
    not convert into each other; a conv stem is not resampled to another patch size); adapt
    a conv stem's first convolution to the channels in `state`. -> whether it is a conv stem."""
    ours = "conv" if isinstance(encoder.patch_embed, ConvStem) else "patch"
    if src.arch["stem"] != ours:
        raise CheckpointError(f"{src.path}: the weights have a {src.arch['stem']} stem, the model "
                              f"a {ours} stem (model.stem): a convolutional stem and a patch "
                              f"projection do not convert into each other")
    if ours == "patch":
        return False
    if src.arch["patch_size"] != encoder.patch_size:
        raise CheckpointError(f"{src.path}: the weights' convolutional stem makes patches of "
                              f"{src.arch['patch_size']}, the model's are {encoder.patch_size} "
                              f"(model.patch_size): a stem's stride-2 stages cannot be resampled")
    w = state["patch_embed.stem.0.conv.weight"]  # (c_0, C, 3, 3)
    if w.shape[1] != encoder.in_chans:
        log(f"patch_embed.stem.0: {w.shape[1]}-channel weights for {encoder.in_chans}-channel "
            f"data: {'summed over' if encoder.in_chans == 1 else 'spread over'} the channels")
        state["patch_embed.stem.0.conv.weight"] = adapt_channels(w, encoder.in_chans)
    return True


def load_decoder(mae: torch.nn.Module, src: Source, log=print) -> bool:
    """Load the source's MAE decoder into `mae` when every key and shape matches; else keep
    the fresh one and say why. -> whether it was loaded."""
    own = split_decoder(mae.state_dict())[1]
    if not src.decoder:
        log("decoder: the weights have none; a fresh decoder is trained")
        return False
    # the distillation map is a run's own choice: loaded where both have it, else its start
    theirs = {k: v for k, v in src.decoder.items() if not k.startswith(DISTILL) or k in own}
    own = {k: v for k, v in own.items() if not k.startswith(DISTILL) or k in theirs}
    bad = sorted(k for k in own if k not in theirs or theirs[k].shape != own[k].shape)
    if bad or set(theirs) - set(own):
        log(f"decoder: the weights' decoder does not fit model.decoder_* ({', '.join(bad[:4])}"
            f"{' ...' if len(bad) > 4 else ''}); a fresh decoder is trained")
        return False
    mae.load_state_dict({**mae.state_dict(), **theirs})
    log("decoder: loaded from the weights")
    return True


def keeps_head(cfg: Config, src: Source, num_classes: int) -> bool:
    """The file's head is kept for classification into exactly its classes."""
    return cfg.task == "classify" and src.arch["num_classes"] == num_classes > 0


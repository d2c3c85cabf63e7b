"""Checks of a Config: each value against its field's annotation (`vitmae.config.typecheck`),
then the values against each other, before any compute starts; every error names its key
(`vitmae.errors.ConfigError`).
"""

from __future__ import annotations

import os

from vitmae.config.schema import Config, PretrainConfig
from vitmae.config.typecheck import check_types
from vitmae.errors import ConfigError
from vitmae.variants import (
    CNN_3D,
    CNN_ARCHS,
    FROM_WEIGHTS,
    SIZE_KEYS,
    check_grid,
    check_stem_patch,
    resolve_sizes,
)


def need(ok: bool, key: str, msg: str) -> None:
    """Raise a ConfigError naming `key` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}: {msg}")


def validate(cfg: Config) -> None:
    """Checks that need no data or model: fail before any compute, naming the key."""
    check_types(cfg)
    _check_model(cfg)
    if cfg.model.spatial_dims == 3:
        _check_volumes(cfg)
    _check_rest(cfg)
    _check_volume_data(cfg.data.volume)
    _check_robust_training(cfg)


def _check_model(cfg: Config) -> None:
    m, d = cfg.model, cfg.data
    if m.arch in CNN_ARCHS:
        _check_cnn(cfg)
        return
    need(0.0 <= m.mask_ratio < 1.0, "model.mask_ratio", f"must be in [0, 1), got {m.mask_ratio}")
    need(m.seg_head != "unet" or m.stem == "conv", "model.seg_head",
         "'unet' takes its skips from the convolutional stem: needs model.stem=conv")
    need(m.stem_width >= 1, "model.stem_width", f"must be >= 1, got {m.stem_width}")
    need(0.0 <= m.drop_path < 1.0, "model.drop_path", f"must be in [0, 1), got {m.drop_path}")
    need(0.0 <= m.patch_drop < 1.0, "model.patch_drop", f"must be in [0, 1), got {m.patch_drop}")
    need(m.patch_drop == 0.0 or cfg.task in ("classify", "multilabel"), "model.patch_drop",
         f"drops tokens of a pooled classifier; a {cfg.task} head needs every token, got "
         f"{m.patch_drop}")
    if m.arch == FROM_WEIGHTS and any(getattr(m, k) is None for k in SIZE_KEYS):
        # the sizes come from the pretrained file, read (and checked again) by the runner
        need(bool(cfg.finetune.pretrained or cfg.pretrain.init), "model.arch",
             "from_weights needs finetune.pretrained or pretrain.init")
        return
    arch = resolve_sizes(m.arch, {k: getattr(m, k) for k in SIZE_KEYS})
    sizes = {**{f"model.{k}": v for k, v in arch.items()},
             **{f"model.{k}": getattr(m, k) for k in ("decoder_embed_dim", "decoder_depth",
                                                       "decoder_num_heads")},
             "data.img_size": d.img_size}
    for key, value in sizes.items():  # before any '%' below
        need(value >= 1, key, f"must be >= 1, got {value}")
    for key in ("model.embed_dim", "model.decoder_embed_dim"):
        need(sizes[key] % 4 == 0, key, f"must be divisible by 4 (2-D sin-cos position "
             f"embedding), got {sizes[key]}")
    need(arch["embed_dim"] % arch["num_heads"] == 0, "model.num_heads",
         f"{arch['num_heads']} heads do not divide the width {arch['embed_dim']}")
    need(m.decoder_embed_dim % m.decoder_num_heads == 0, "model.decoder_num_heads",
         f"{m.decoder_num_heads} heads do not divide the decoder width {m.decoder_embed_dim}")
    need(not m.rope or (arch["embed_dim"] // arch["num_heads"]) % 4 == 0, "model.rope",
         f"needs a head width divisible by 4, got {arch['embed_dim'] // arch['num_heads']}")
    need(m.seg_aux >= 0, "model.seg_aux", f"must be >= 0, got {m.seg_aux}")
    check_grid((d.img_size,) * m.spatial_dims, arch["patch_size"])
    if m.stem == "conv":
        check_stem_patch(arch["patch_size"])


def _check_volumes(cfg: Config) -> None:
    """What the 3-D ViT and MAE (model.spatial_dims=3) do not have (yet); a CNN needs a 3-D
    version."""
    m, vol = cfg.model, "volumes (model.spatial_dims=3)"
    if m.arch in CNN_ARCHS:  # _check_cnn has checked the rest
        need(m.arch in CNN_3D, "model.arch",
             f"{m.arch} has no 3-D version for {vol} (3-D CNNs: {', '.join(CNN_3D)})")
        return
    need(cfg.task != "segment" or m.seg_head == "linear", "model.seg_head",
         f"the 3-D segmenter of {vol} has the linear head (per-token logits, trilinear "
         f"upsampling); got {m.seg_head!r}")
    need(not m.rope, "model.rope", f"the rotary table is 2-D; {vol} use the 3-D sin-cos table")
    if m.arch == FROM_WEIGHTS and any(getattr(m, k) is None for k in SIZE_KEYS):
        return  # the sizes come from the weights; the model refuses a width it cannot split
    width = resolve_sizes(m.arch, {k: getattr(m, k) for k in SIZE_KEYS})["embed_dim"]
    for key, value in (("model.embed_dim", width),
                       ("model.decoder_embed_dim", m.decoder_embed_dim)):
        need(value % 6 == 0, key, f"the 3-D sin-cos table splits the width over three axes, "
             f"each sin and cos: must be divisible by 6, got {value}")


def _check_volume_data(v) -> None:
    """data.volume: the reading and cutting of a user's scans."""
    r = v.intensity_range
    need(r is None or (len(r) == 2 and r[0] < r[1]), "data.volume.intensity_range",
         f"expected [lo, hi] with lo < hi, got {r}")
    need(v.spacing is None or (len(v.spacing) == 3 and all(s > 0 for s in v.spacing)),
         "data.volume.spacing", f"expected three voxel sizes > 0 (one per axis), got {v.spacing}")
    need(0.0 <= v.foreground_crop <= 1.0, "data.volume.foreground_crop",
         f"must be in [0, 1], got {v.foreground_crop}")
    need(0.0 <= v.overlap < 1.0, "data.volume.overlap", f"must be in [0, 1), got {v.overlap}")


def _check_cnn(cfg: Config) -> None:
    """What a CNN baseline cannot do: each ViT-only option refused, naming its key."""
    m, f, arch = cfg.model, cfg.finetune, f"model.arch={cfg.model.arch}"
    seg = "segmentation needs a ViT" if m.spatial_dims == 2 else \
        "3-D segmentation needs the ViT (its linear head)"
    need(cfg.task in ("classify", "multilabel"), "task",
         f"{arch} classifies (classify, multilabel); {seg}, got {cfg.task!r}")
    need(f.optim.layer_decay == 1.0, "finetune.optim.layer_decay",
         f"layer-wise lr decay is defined over a ViT's blocks; {arch} needs 1.0, "
         f"got {f.optim.layer_decay}")
    need(f.pretrained is None, "finetune.pretrained",
         f"loads ViT encoders (vitmae, timm, MAE, HuggingFace); {arch} trains from scratch")
    need(cfg.pretrain.init is None, "pretrain.init",
         f"MAE pretraining needs a ViT; {arch} trains from scratch")
    for key in SIZE_KEYS:
        need(getattr(m, key) is None, f"model.{key}", f"a ViT size; {arch} has none")
    need(m.patch_drop == 0.0, "model.patch_drop", f"drops a ViT's patch tokens; {arch} has none")
    # BatchNorm updates its running statistics in place: shards on threads would race
    need(cfg.run.shards == 1, "run.shards",
         f"{arch} has BatchNorm layers, whose running statistics one step on several threads "
         f"would update at once; set run.shards=1")
    need(cfg.data.img_size >= 1, "data.img_size", f"must be >= 1, got {cfg.data.img_size}")
    need(cfg.data.batch_size >= 2, "data.batch_size",
         f"{arch}'s BatchNorm normalises over the batch: needs >= 2, got {cfg.data.batch_size}")


def _check_rest(cfg: Config) -> None:
    d = cfg.data
    need(d.batch_size >= 1, "data.batch_size", f"must be >= 1, got {d.batch_size}")
    need(d.num_workers >= 0, "data.num_workers", f"must be >= 0, got {d.num_workers}")
    need(d.subset is None or d.subset >= 1, "data.subset", f"must be >= 1, got {d.subset}")
    need(0.0 < d.labels_fraction <= 1.0, "data.labels_fraction",
         f"must be in (0, 1], got {d.labels_fraction}")
    need(d.labels_fraction == 1.0 or cfg.task == "classify", "data.labels_fraction",
         f"class-balanced subsets need one class per image (task=classify), got "
         f"task={cfg.task}")
    for stage in ("pretrain", "finetune"):
        o, name = getattr(cfg, stage).optim, f"{stage}.optim"
        need(o.epochs >= 1, f"{name}.epochs", f"must be >= 1, got {o.epochs}")
        need(o.accum_iter >= 1, f"{name}.accum_iter", f"must be >= 1, got {o.accum_iter}")
        need(0.0 < o.layer_decay <= 1.0, f"{name}.layer_decay",
             f"must be in (0, 1], got {o.layer_decay}")
        need(o.lr is None or o.lr > 0, f"{name}.lr", f"must be > 0, got {o.lr}")
        need(o.min_lr >= 0 and o.warmup_epochs >= 0, f"{name}.min_lr/warmup_epochs",
             f"must be >= 0, got {o.min_lr} and {o.warmup_epochs}")
        need(all(0.0 <= b < 1.0 for b in o.betas), f"{name}.betas",
             f"must be in [0, 1), got {list(o.betas)}")
    _check_monitors(cfg.pretrain)
    _check_continued(cfg.pretrain)
    need(cfg.finetune.head_lr_mult > 0, "finetune.head_lr_mult",
         f"must be > 0, got {cfg.finetune.head_lr_mult}")
    need(cfg.finetune.class_weights == "none" or cfg.task == "classify",
         "finetune.class_weights", f"weighs single-label classes; task={cfg.task} has none")
    for key, p in (("finetune.pretrained", cfg.finetune.pretrained),
                   ("pretrain.init", cfg.pretrain.init)):
        need(p is None or os.path.exists(p), key,  # False on any OSError
             f"no such file or folder: {p!r}")
    m = cfg.model
    need(m.class_token or m.global_pool == "avg", "model.global_pool",
         "'token' needs model.class_token=true")
    need(m.class_token or not m.rope, "model.rope", "needs model.class_token=true")
    need(m.mlp_ratio > 0 and m.norm_eps > 0, "model.mlp_ratio/norm_eps",
         f"must be > 0, got {m.mlp_ratio} and {m.norm_eps}")
    for key, stats in (("data.mean", d.mean), ("data.std", d.std)):
        need(stats is None or len(stats) >= 1, key, "expected a list of per-channel values")
    need((d.mean is None) == (d.std is None), "data.mean/std", "set both or neither")
    need(d.std is None or all(v > 0 for v in d.std), "data.std", f"must be > 0, got {d.std}")
    need(cfg.run.keep_last >= 1, "run.keep_last", f"must be >= 1, got {cfg.run.keep_last}")
    need(cfg.run.log_interval >= 1, "run.log_interval", f"must be >= 1, got {cfg.run.log_interval}")
    r = cfg.run
    need(r.eval_interval >= 1, "run.eval_interval", f"must be >= 1, got {r.eval_interval}")
    need(r.ckpt_interval >= 0, "run.ckpt_interval", f"must be >= 0, got {r.ckpt_interval}")
    need(r.threads is None or r.threads >= 1, "run.threads", f"must be >= 1, got {r.threads}")
    need(r.shards >= 1, "run.shards", f"must be >= 1, got {r.shards}")
    need(r.shards == 1 or r.device != "cuda", "run.shards",
         f"shards the step across CPU threads; got {r.shards} with run.device=cuda")
    need(d.batch_size >= r.shards, "run.shards",
         f"{r.shards} shards need data.batch_size >= {r.shards}, got {d.batch_size}")


def _check_robust_training(cfg: Config) -> None:
    """finetune.adversarial's attack and finetune.corruption_aug (2-D corruptions only)."""
    f = cfg.finetune
    need(0.0 < f.adv_eps <= 1.0, "finetune.adv_eps",
         f"an L-inf radius in pixels in [0, 1]: must be in (0, 1], got {f.adv_eps}")
    need(f.adv_steps >= 1, "finetune.adv_steps", f"must be >= 1, got {f.adv_steps}")
    need(f.adv_alpha is None or f.adv_alpha > 0, "finetune.adv_alpha",
         f"must be > 0 (or null: the method's own), got {f.adv_alpha}")
    need(0.0 < f.adv_fraction <= 1.0, "finetune.adv_fraction",
         f"the share of each batch attacked: must be in (0, 1], got {f.adv_fraction}")
    need(f.adv_size is None or 1 <= f.adv_size <= cfg.data.img_size, "finetune.adv_size",
         f"a size in pixels in [1, data.img_size={cfg.data.img_size}] (or null: the crop's "
         f"own), got {f.adv_size}")
    need(0.0 <= f.corruption_aug <= 1.0, "finetune.corruption_aug",
         f"a probability: must be in [0, 1], got {f.corruption_aug}")
    need(not f.corruption_aug or cfg.model.spatial_dims == 2, "finetune.corruption_aug",
         "the common corruptions are of 2-D images; set 0 for volumes (model.spatial_dims=3)")
    size = f.corruption_size
    need(size is None or 8 <= size <= cfg.data.img_size, "finetune.corruption_size",
         f"a size in pixels in [8, data.img_size={cfg.data.img_size}] (or null: the crop's "
         f"own), got {size}")


def _check_continued(o: PretrainConfig) -> None:
    """The options of continued pretraining (from pretrain.init)."""
    w = o.decoder_warmup_epochs
    need(0 <= w < o.optim.epochs, "pretrain.decoder_warmup_epochs",
         f"must be in [0, pretrain.optim.epochs={o.optim.epochs}), got {w}")
    need(o.encoder_lr_scale >= 0, "pretrain.encoder_lr_scale",
         f"must be >= 0, got {o.encoder_lr_scale}")
    need(o.distill_weight >= 0, "pretrain.distill_weight",
         f"must be >= 0 (0: off), got {o.distill_weight}")
    need(not o.distill_weight or o.init is not None, "pretrain.distill_weight",
         "distils the starting encoder's features: set pretrain.init to the weights to keep")


def _check_monitors(o: PretrainConfig) -> None:
    for key in ("knn_every", "recon_every"):
        value = getattr(o, key)
        need(value >= 0, f"pretrain.{key}", f"must be >= 0 (0: off), got {value}")
    need(o.knn_k >= 1, "pretrain.knn_k", f"must be >= 1, got {o.knn_k}")
    need(o.knn_t > 0, "pretrain.knn_t", f"must be > 0, got {o.knn_t}")
    need(o.knn_train is None or o.knn_train >= 1, "pretrain.knn_train",
         f"must be >= 1, got {o.knn_train}")
    need(not o.probe or o.knn_every > 0, "pretrain.probe",
         "runs on the k-NN monitor's features: set pretrain.knn_every too")

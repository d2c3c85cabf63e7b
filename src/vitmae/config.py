"""Typed run configuration: dataclasses, YAML presets and `key.sub=value` overrides.

A preset lists only what differs from the defaults below. `load_config` resolves a preset
(a path, or the name of a built-in preset in `vitmae/configs/`), applies overrides, checks
every key and type, and validates the values before any compute starts. Field names follow
the MAE reference code (`mask_ratio`, `norm_pix_loss`, `blr`, `min_lr`, `warmup_epochs`,
`accum_iter`, `layer_decay`, `drop_path`) so that published recipes carry over.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from vitmae.errors import ConfigError
from vitmae.variants import CNN_ARCHS, FROM_WEIGHTS, SIZE_KEYS, CnnStem, resolve_sizes

PRESET_DIR = Path(__file__).parent / "configs"


@dataclass
class ModelConfig:
    # a name from vitmae.models.vit.VARIANTS, or "from_weights": every size and layout option
    # taken from finetune.pretrained (or pretrain.init); or a CNN baseline (resnet18,
    # vitmae.models.cnn), trained from scratch for classify / multilabel. The ViT options
    # below (sizes, drop_path, pooling, layout, decoder, masking, seg_*) do not apply to it.
    arch: str = "vit_micro_patch4"
    # CNN stem: "imagenet" (torchvision's 7x7 stride-2 conv + max-pool, for ~224 px) or
    # "cifar" (3x3 stride-1 conv, no max-pool: small images keep their resolution; a 32 px
    # image would leave the imagenet stem at 8x8)
    cnn_stem: CnnStem = "imagenet"
    patch_size: int | None = None  # None: the variant's own
    embed_dim: int | None = None  # None: the variant's own (also depth, num_heads)
    depth: int | None = None
    num_heads: int | None = None
    drop_path: float = 0.1  # stochastic depth for fine-tuning (MAE: 0.1 for ViT-B)
    global_pool: Literal["avg", "token"] = "avg"  # "avg": MAE's fine-tuning default
    # Layout options that public weights may differ in (timm / HuggingFace names); an
    # imported file sets them with model.arch=from_weights.
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1.0e-6  # timm and MAE; HuggingFace's ViTs use 1e-12
    class_token: bool = True
    # "sincos": fixed (MAE); "learned": trained, from sin-cos or a file
    pos_embed: Literal["sincos", "learned"] = "sincos"
    fc_norm: bool = False  # timm's avg-pool layout: LayerNorm after pooling, none before
    # MAE decoder: light, as in He et al. (512-d, 8 blocks for ViT-B); smaller for CPU variants.
    decoder_embed_dim: int = 128
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    mask_ratio: float = 0.75  # the paper's default
    norm_pix_loss: bool = True  # per-patch normalized targets: better features (paper, Table 1d)
    rope: bool = False  # also rotary (2-D axial RoPE) positions in attention: offset-aware
    # "patch": a p x p patch projection (ViT, the default, as every public checkpoint);
    # "conv": a hybrid, tokens from a strided 3x3 convolutional stem (Xiao et al. 2021), which
    # MAE masks stage by stage (ConvMAE) and which the unet head reads skips from
    stem: Literal["patch", "conv"] = "patch"
    # the conv stem's first stage width, doubling per stage: 32 gives vit_*_patch8 32, 64, 128
    # channels, the last as wide as vit_mini's tokens
    stem_width: int = 32
    # segmentation decoder: "linear" (Segmenter), "pup" (SETR-PUP) or "unet" (TransUNet-style
    # skips from the conv stem and a full-resolution branch; needs model.stem=conv)
    seg_head: Literal["linear", "pup", "unet"] = "linear"
    seg_aux: float = 0.0  # > 0: an auxiliary linear head on a middle block, its loss weight


@dataclass
class MnistSegConfig:
    """The MNIST segmentation data sets' own options (vitmae.data.mnist_seg)."""

    digits: int = 3  # mnist_seg composite: at most this many digits per canvas
    threshold: int = 128  # a pixel above this intensity (0-255) is the digit


@dataclass
class DataConfig:
    dataset: str = "digits"  # digits | mnist | fashion_mnist | cifar10 | folder | seg_folder | ...
    root: str | None = None  # None: $VITMAE_DATA, else ./data
    img_size: int = 16  # images are resized to img_size x img_size
    batch_size: int = 64  # per process
    num_workers: int = 0  # DataLoader workers per process; 0 loads in the main process
    train_split: str = "train"
    val_split: str = "test"
    subset: int | None = None  # use only the first N training images (quick checks)
    # Fine-tuning sees only this class-balanced fraction of the training images (after
    # data.subset): per class round(fraction * n_c), at least 1, the same images for every
    # run with the same data.seed, nested across fractions (vitmae.data.labelled). For
    # label-efficiency studies; single-label data sets (task=classify) only. MAE
    # pretraining still uses every training image: it reads no labels.
    labels_fraction: float = 1.0
    download: bool = False  # use torchvision's downloaders for missing files (needs internet)
    # skip bad files (unreadable or missing images, masks with values that are not classes)
    # and report them each epoch, instead of stopping; a bad item is replaced by the next one
    skip_bad: bool = False
    # image folders: an empty class folder, or a class folder in one split only, stops the
    # run (class indices would differ between splits); true: go on, with the union of both
    # splits' class folders as the classes
    allow_class_mismatch: bool = False
    # seed of generated data sets (mnist_seg canvases, digits split) and of the subset of
    # data.labels_fraction
    seed: int = 0
    # Per-channel normalisation; None: the data set's own, or the pretrained weights' (the
    # runner sets them from the file and the run's config.yaml records them)
    mean: list[float] | None = None
    std: list[float] | None = None
    # the options of the mnist_seg and mnist_seg_single data sets
    mnist_seg: MnistSegConfig = field(default_factory=MnistSegConfig)


@dataclass
class OptimConfig:
    """The optimiser and its lr schedule: one per stage (pretrain.optim, finetune.optim)."""

    epochs: int = 10
    optimizer: Literal["adamw", "adam"] = "adamw"
    lr: float | None = None  # absolute lr; None: blr * effective batch / 256 (MAE rule)
    blr: float = 1e-3
    min_lr: float = 1e-6
    warmup_epochs: float = 1.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    layer_decay: float = 1.0  # 1.0: off; MAE fine-tunes ViT-B with 0.65
    accum_iter: int = 1
    clip_grad: float | None = None
    schedule: Literal["cosine", "constant"] = "cosine"  # after warmup


@dataclass
class PretrainConfig:
    # Weights to start the MAE from (any format of vitmae.weights): the encoder's, and the
    # decoder's when the file has one (an official MAE _full checkpoint, a vitmae MAE run)
    init: str | None = None
    # blr: MAE's pretraining base lr (He et al. 2022)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=20, blr=1.5e-4))
    # Monitors (vitmae.monitors), after every Nth epoch and after the last; 0: off.
    # k-NN top-1 of the encoder's unmasked features (pooled as model.global_pool) on the
    # labelled train/test split: the k most cosine-similar training images vote with weight
    # exp(sim / t) (Wu et al. 2018; DINO). A pass over both splits: off unless a preset asks.
    knn_every: int = 0
    knn_k: int = 20  # neighbours (InstDisc, DINO)
    knn_t: float = 0.07  # vote temperature (InstDisc, DINO)
    knn_train: int | None = None  # the first N training images as the k-NN bank; None: all
    probe: bool = False  # also a linear probe (softmax regression) on the same features
    # The MAE loss on a fixed validation batch under a fixed mask, and its reconstruction grid
    # as recon/epoch-NNN.png in the run folder: one batch, so on by default
    recon_every: int = 1


@dataclass
class FinetuneConfig:
    # weights to start from: a vitmae run or checkpoint, a timm, official MAE or HuggingFace
    # file or folder (vitmae.weights detects which); None: from scratch
    pretrained: str | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    linear_probe: bool = False  # freeze the encoder, train the head only
    head_lr_mult: float = 1.0  # lr multiplier of the task head (mmsegmentation's decode heads: 10)
    label_smoothing: float = 0.0  # of the cross-entropy loss (task=classify)


@dataclass
class RunConfig:
    output_dir: str = "runs"
    name: str | None = None  # run folder name; None: <stage>-<dataset>-<time>
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    log_interval: int = 20  # steps between metrics.jsonl records
    ckpt_interval: int = 0  # steps between mid-epoch checkpoints; 0: once per epoch
    keep_last: int = 2  # checkpoints kept in the run folder
    eval_interval: int = 1  # epochs between evaluations
    threads: int | None = None  # torch intra-op threads; None: torch's default
    # CPU: cut each batch into this many shards, run in parallel threads of one intra-op
    # thread each (vitmae.shards); on 2 cores 2 shards beat 2 intra-op threads. 1: off
    shards: int = 1
    compile: bool = False  # torch.compile the model (GPU)
    # glibc: keep freed memory in the process instead of faulting a step's activations in
    # again every step (vitmae.allocator; one-thread CPU runs gain, at some peak memory).
    # A process-wide setting, so off unless asked for: a notebook or a GPU job keeps glibc's
    # own behaviour
    keep_freed_memory: bool = False
    # also write every metrics.jsonl record (and the pictures it names) as TensorBoard events
    # into the run folder, for `tensorboard --logdir runs/`; needs the tensorboard package
    tensorboard: bool = False


@dataclass
class Config:
    task: Literal["classify", "segment", "multilabel"] = "classify"  # the fine-tuning task
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    run: RunConfig = field(default_factory=RunConfig)


# Keys of earlier layouts -> where they are now: the unknown-key error names the new place, and
# config_from_dict moves them when it reads an older run folder's config.yaml (a preset or an
# override gets the error, not the move)
MOVED = {**{f"{stage}.{f.name}": f"{stage}.optim.{f.name}" for stage in ("pretrain", "finetune")
            for f in dataclasses.fields(OptimConfig)},
         "data.seg_digits": "data.mnist_seg.digits",
         "data.seg_threshold": "data.mnist_seg.threshold"}


def to_dict(cfg: Any) -> dict:
    """The config as plain YAML-safe data (tuples become lists)."""
    out = dataclasses.asdict(cfg)

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return plain(out)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; int is accepted where float is expected."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if any(type(value) is type(c) and value == c for c in typing.get_args(tp)):
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads '1e-4' (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _apply(obj: Any, data: dict, prefix: str = "") -> None:
    """Set the fields of dataclass `obj` from nested dict `data`, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            hint = f"moved to {MOVED[full]}" if full in MOVED else \
                f"valid keys here: {', '.join(sorted(names))}"
            raise ConfigError(f"unknown key '{full}' ({hint})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, f"{full}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=1e-4' -> (['optim', 'lr'], 0.0001); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key.sub=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{text}': value is not valid YAML ({e})") from None
    return key.strip().split("."), value


def resolve_preset(preset: str) -> Path:
    """A preset path, or the name of a built-in preset ('digits' -> vitmae/configs/digits.yaml)."""
    path = Path(preset)
    if path.is_file():
        return path
    builtin = PRESET_DIR / (preset if preset.endswith(".yaml") else f"{preset}.yaml")
    if builtin.is_file():
        return builtin
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    raise ConfigError(f"preset '{preset}' not found: no such file, and no built-in preset of "
                      f"that name (built-in: {', '.join(names)})")


def load_config(preset: str | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Defaults <- preset YAML <- overrides, then `validate`."""
    cfg = Config()
    if preset:
        path = resolve_preset(preset)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        try:
            _apply(cfg, data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def apply_overrides(cfg: Config, overrides: list[str] | tuple) -> Config:
    """Apply `key.sub=value` strings to `cfg` in place (no validation)."""
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _apply(cfg, nested)
    return cfg


def config_from_dict(data: dict) -> Config:
    """Rebuild a Config from `to_dict` output (a run folder's config.yaml), also from that of
    an earlier layout (the keys of MOVED)."""
    cfg = Config()
    _apply(cfg, upgrade_layout(data))
    return cfg


def upgrade_layout(data: Any) -> Any:
    """A copy of config dict `data` with each key of MOVED at its new place, unless that
    place is taken (then the unknown-key error names the old key)."""
    if not isinstance(data, dict):
        return data  # _apply names what is wrong
    data = copy.deepcopy(data)
    if isinstance(data.get("pretrain"), dict):  # the flat layout's, inherited, never read
        data["pretrain"].pop("label_smoothing", None)
    for old, new in MOVED.items():
        *where, name = old.split(".")
        parent = _mapping(data, where)
        if parent is None or name not in parent:
            continue
        *where, new_name = new.split(".")
        target = _mapping(data, where, create=True)
        if target is not None and new_name not in target:
            target[new_name] = parent.pop(name)
    return data


def _mapping(data: dict, keys: list[str], create: bool = False) -> dict | None:
    """data[k0][k1]... when that is a mapping, else None; create: add missing levels."""
    for key in keys:
        if create and key not in data:
            data[key] = {}
        data = data.get(key)
        if not isinstance(data, dict):
            return None
    return data


def need(ok: bool, key: str, msg: str) -> None:
    """Raise a ConfigError naming `key` unless `ok`."""
    if not ok:
        raise ConfigError(f"{key}: {msg}")


def validate(cfg: Config) -> None:
    """Value checks that need no data or model: fail before any compute, naming the key."""
    _check_types(cfg)
    _check_model(cfg)
    _check_rest(cfg)


def _check_types(obj: Any, prefix: str = "") -> None:
    """Every value against its annotation (a Literal's choices too), as the loader checks them:
    also those set in Python, e.g. from a weights file."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_types(value, f"{prefix}{f.name}.")
        else:
            _coerce(value, hints[f.name], f"{prefix}{f.name}")


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
    if m.arch == FROM_WEIGHTS and any(getattr(m, k) is None for k in SIZE_KEYS):
        # the sizes come from the pretrained file, read (and checked again) by the runner
        need(bool(cfg.finetune.pretrained or cfg.pretrain.init), "model.arch",
             "from_weights needs finetune.pretrained or pretrain.init")
        return
    try:
        arch = resolve_sizes(m.arch, {k: getattr(m, k) for k in SIZE_KEYS})
    except ValueError as e:
        raise ConfigError(str(e)) from None
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
    need(d.img_size % arch["patch_size"] == 0, "data.img_size",
         f"{d.img_size} is not divisible by the patch size {arch['patch_size']}")
    p = arch["patch_size"]
    need(m.stem != "conv" or (p >= 2 and p & (p - 1) == 0), "model.stem",
         f"conv needs a power-of-2 patch size >= 2 (one stride-2 stage per halving), got {p}")


def _check_cnn(cfg: Config) -> None:
    """What a CNN baseline cannot do: each ViT-only option refused, naming its key."""
    m, f, arch = cfg.model, cfg.finetune, f"model.arch={cfg.model.arch}"
    need(cfg.task in ("classify", "multilabel"), "task",
         f"{arch} classifies (classify, multilabel); segmentation needs a ViT, got {cfg.task!r}")
    need(f.optim.layer_decay == 1.0, "finetune.optim.layer_decay",
         f"layer-wise lr decay is defined over a ViT's blocks; {arch} needs 1.0, "
         f"got {f.optim.layer_decay}")
    need(f.pretrained is None, "finetune.pretrained",
         f"loads ViT encoders (vitmae, timm, MAE, HuggingFace); {arch} trains from scratch")
    need(cfg.pretrain.init is None, "pretrain.init",
         f"MAE pretraining needs a ViT; {arch} trains from scratch")
    for key in SIZE_KEYS:
        need(getattr(m, key) is None, f"model.{key}", f"a ViT size; {arch} has none")
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
    need(cfg.finetune.head_lr_mult > 0, "finetune.head_lr_mult",
         f"must be > 0, got {cfg.finetune.head_lr_mult}")
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

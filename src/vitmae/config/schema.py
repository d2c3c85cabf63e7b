"""The run configuration's fields: nested dataclasses, each default with its reason.

`vitmae.config` loads them from YAML presets and overrides and `vitmae.config.checks` checks
them; a preset lists only what differs from the defaults here. Field names follow the MAE
reference code (`mask_ratio`, `norm_pix_loss`, `blr`, `min_lr`, `warmup_epochs`, `accum_iter`,
`layer_decay`, `drop_path`) so that published recipes carry over. A field whose value is one
of a fixed set of strings is a `Literal`: the loader checks it against those.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vitmae.variants import CnnStem


@dataclass
class ModelConfig:
    # a name from vitmae.variants.VARIANTS, or "from_weights": every size and layout option
    # taken from finetune.pretrained (or pretrain.init); or a CNN baseline (resnet18,
    # vitmae.models.cnn; with spatial_dims=3 torchvision's video r3d_18), trained from scratch
    # for classify / multilabel. The ViT options below (sizes, drop_path, pooling, layout,
    # decoder, masking, seg_*) do not apply to it.
    arch: str = "vit_micro_patch4"
    # CNN stem: "imagenet" (torchvision's 7x7 stride-2 conv + max-pool, for ~224 px) or
    # "cifar" (3x3 stride-1 conv, no max-pool: small images keep their resolution; a 32 px
    # image would leave the imagenet stem at 8x8). With spatial_dims=3: torchvision's video
    # stem ((3, 7, 7) conv, stride (1, 2, 2)) or a 3x3x3 stride-1 conv
    cnn_stem: CnnStem = "imagenet"
    patch_size: int | None = None  # None: the variant's own
    embed_dim: int | None = None  # None: the variant's own (also depth, num_heads)
    depth: int | None = None
    num_heads: int | None = None
    drop_path: float = 0.1  # stochastic depth for fine-tuning (MAE: 0.1 for ViT-B)
    # fine-tuning a classifier: this fraction of each training image's patch tokens dropped
    # at random before the blocks (PatchDropout, Liu et al. 2023), a cheaper step at high
    # resolution; evaluation and prediction see every token
    patch_drop: float = 0.0
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
    # 3: volumes (B, C, D, H, W), e.g. data.dataset=medmnist3d or volume_folder: cubic
    # patches of patch_size**3 voxels, a 3-D sin-cos table (embed_dim and decoder_embed_dim
    # divisible by 6), the same blocks; classify, multilabel and segment (seg_head linear;
    # vitmae.models.patch3d).
    # With a CNN model.arch: its 3-D version (vitmae.variants.CNN_3D)
    spatial_dims: Literal[2, 3] = 2


@dataclass
class MnistSegConfig:
    """The MNIST segmentation data sets' own options (vitmae.data.mnist_seg)."""

    digits: int = 3  # mnist_seg composite: at most this many digits per canvas
    threshold: int = 128  # a pixel above this intensity (0-255) is the digit


@dataclass
class Medmnist3dConfig:
    """The MedMNIST 3-D data set's own options (vitmae.data.medmnist3d)."""

    name: Literal["adrenal", "vessel"] = "adrenal"  # AdrenalMNIST3D or VesselMNIST3D
    size: Literal[28, 64] = 28  # which official file: 28^3 or 64^3 voxels (adrenal has both)


@dataclass
class VolumeConfig:
    """How a user's scans are read (volume_folder, volume_seg_folder) and, for segmentation,
    cut into the model's cubes (vitmae.data.volume_seg_items)."""

    # [lo, hi]: voxels clipped to this range, then scaled to [0, 1] (a CT window in Hounsfield
    # units, e.g. [-175, 250] for abdominal organs); None: each volume's own min-max
    intensity_range: list[float] | None = None
    # volume_seg_folder: voxel size (one per array axis, in the NIfTI header's units, mm) that
    # every NIfTI scan and its mask are resampled to (trilinear / nearest); None: as stored.
    # .npy files have no header: they are taken to be at this spacing already
    spacing: list[float] | None = None
    # volume_seg_folder training: the share of random data.img_size^3 crops centred on a
    # voxel of a class other than 0 (as MONAI's RandCropByPosNegLabel), the rest uniform
    foreground_crop: float = 0.5
    # volume_seg_folder evaluation and `vitmae predict`: whole scans are segmented by cubes
    # overlapping by this fraction of their side, the logits of overlapping cubes averaged
    overlap: float = 0.5
    # training: the three axes in a random order besides the flips (any of the cube's 48
    # symmetries), for shapes with no orientation of their own (MedMNIST's); off for scans
    # whose axes mean something
    permute_axes: bool = False


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
    # the options of the medmnist3d data set
    medmnist3d: Medmnist3dConfig = field(default_factory=Medmnist3dConfig)
    # the options of a user's scans (volume_folder, volume_seg_folder)
    volume: VolumeConfig = field(default_factory=VolumeConfig)


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
    # Continued pretraining from `init` without wrecking what the weights know: a fresh
    # decoder's first gradients distort a pretrained encoder (Kumar et al. 2022, LP-FT), so it
    # can learn alone first; the encoder can move slower than the decoder (also with
    # optim.layer_decay over its blocks); and its visible tokens can be held to a frozen copy
    # of the starting encoder's features (Mendieta et al. 2023, GFM; Wei et al. 2022).
    decoder_warmup_epochs: float = 0.0  # epochs with the encoder frozen (lr 0)
    encoder_lr_scale: float = 1.0  # the encoder's lr relative to the decoder's
    distill_weight: float = 0.0  # weight of the feature-distillation loss; 0: off
    # Monitors (vitmae.train.monitors), after every Nth epoch and after the last; 0: off.
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
    # task=classify: "balanced" weighs each class's cross-entropy by N / (k n_c), n_c its
    # training items, k the classes present (scikit-learn's rule), so that a rare class
    # (VesselMNIST3D's aneurysms) counts as much as a common one; "none": every item alike
    class_weights: Literal["none", "balanced"] = "none"
    # also evaluate this split after every epoch, logged as <split>_<metric> in the epoch's
    # monitor record (vitmae.train.split_monitor): protocols that pick the epoch by
    # validation and report test there (MedMNIST: best val AUC) read both; None: off
    test_split: str | None = None
    # keep the weights of the epoch with the best validation value of this metric (higher is
    # better: top1, auc, acc, miou, map, ...) in RUN/best, with best.json naming the epoch and
    # its val and test figures (vitmae.train.best); None: only the last checkpoints are kept
    best_by: str | None = None
    # Training against attacks and corruptions (vitmae.train.adversarial, .corruption_aug),
    # off by default: each costs clean accuracy and step time.
    # "fgsm": fast adversarial training, FGSM from a random start (Wong, Rice & Kolter 2020,
    # "Fast is better than free"), about 2x a clean step; "pgd": PGD-k from a random start
    # (Madry et al. 2018), about (k+1)x; with task=segment, "pgd" ascends SegPGD's loss
    # (SegPGD-AT, Gu et al. 2022: it fools more pixels than per-pixel CE in as many steps)
    # and "fgsm" per-pixel CE (one step: SegPGD's first step weighs only correct pixels);
    # "nfgsm": N-FGSM (de Jorge et al. 2022), one step of adv_eps from the image plus noise of
    # 2 adv_eps, unprojected: single-step cost without FGSM's catastrophic overfitting at 8/255
    adversarial: Literal["none", "fgsm", "nfgsm", "pgd"] = "none"
    # L-inf radius in pixels in [0, 1] (YAML: 0.03137254901960784): the CIFAR-10 standard
    adv_eps: float = 8 / 255
    adv_steps: int = 7  # PGD's steps: Madry et al.'s CIFAR-10 training attack (PGD-7)
    # step size in pixels; None: 1.25 adv_eps for fgsm (Wong et al.), adv_eps for nfgsm,
    # 2.5 adv_eps / adv_steps for pgd (the rule of Madry's lab's `robustness` library: the
    # steps can cross the ball from any start; Madry et al.'s CIFAR-10 run took 7 steps of
    # 2/255, 1.75 eps in all)
    adv_alpha: float | None = None
    # share of each batch attacked (the first round(adv_fraction x batch) images; the rest
    # stay clean): below 1, the mixed batch of Goodfellow et al. 2015 / Kurakin et al. 2017,
    # keeping more clean accuracy on small training sets
    adv_fraction: float = 1.0
    # the perturbation's grid: adv_size x adv_size resized onto the training crop (the stored
    # image's threat model, 32 for CIFAR-10 at 160 or 224 px); None: the crop's own pixels
    adv_size: int | None = None
    # probability that a training image is replaced by one of the 15 common corruptions at a
    # random severity 1-5 (Hendrycks & Dietterich 2019), applied to the training crop in the
    # step; 2-D images only
    corruption_aug: float = 0.0
    # corrupt at this size (pixels, square) and add the change, resized back, to the crop,
    # e.g. 32 for CIFAR-10 trained at 224 px: the stored size, where `vitmae robustness`
    # corrupts test images (and so the same parameter table); None: at the crop's own size
    corruption_size: int | None = None


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
    # thread each (vitmae.train.shards); on 2 cores 2 shards beat 2 intra-op threads. 1: off
    shards: int = 1
    compile: bool = False  # torch.compile the model (GPU)
    # glibc: keep freed memory in the process instead of faulting a step's activations in
    # again every step (vitmae.train.allocator; one-thread CPU runs gain, at some peak memory).
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

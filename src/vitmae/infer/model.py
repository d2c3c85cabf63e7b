"""A trained model opened for use on new images: `open_model(checkpoint)`.

Three kinds of checkpoint:
- a vitmae run folder, `ckpt-*` folder or its `model.safetensors`: the run's config.yaml gives
  the model, its dataset.json the class names, channels and normalisation (a run made before
  dataset.json existed builds its evaluation data set to read them);
- a plain weights file or HuggingFace folder (`vitmae.weights`: timm, official MAE,
  HuggingFace): sizes, normalisation and class names (HuggingFace only) from the file, and
  timm's ImageNet evaluation transform (`vitmae.infer.preprocess.for_weights`);
- an `.onnx` file written by `vitmae export`: run by onnxruntime, with the task, class names
  and preprocessing read from its metadata.
Models are in eval mode (no masking, no dropout or drop-path) on the CPU.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from vitmae.config import Config, config_from_dict
from vitmae.data import build_dataset
from vitmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from vitmae.errors import UsageError
from vitmae.infer.preprocess import WEIGHTS_CROP_PCT, Preprocess, for_dataset, for_weights
from vitmae.models import build_finetune_model, build_vit
from vitmae.models.vit import VisionTransformer
from vitmae.runs.checkpoint import read_weights
from vitmae.runs.folder import read_data_info, run_dir_of
from vitmae.variants import FROM_WEIGHTS
from vitmae.weights import read_source
from vitmae.weights.keys import encoder_state, is_mae
from vitmae.weights.pretrained import adopt_source, load_into

IMAGENET_CLASSES = 1000  # a timm head of this size is taken as ImageNet-1k
FEATURES = "features"  # the task of an encoder without a head (MAE runs, headless weights)
ONNX_INPUT, ONNX_OUTPUT = "pixel_values", "logits"
ONNX_META = "vitmae"  # the metadata_props key holding `InferenceModel.metadata()` as JSON


@dataclass
class InferenceModel:
    task: str  # classify | multilabel | segment | features
    preprocess: Preprocess
    classes: list[str] | None  # None: the head's class names are not known
    num_classes: int
    source: str
    module: torch.nn.Module | None = None  # the whole model; None for an ONNX file
    encoder: VisionTransformer | None = None  # the ViT inside it (embed, attention maps)
    session: object | None = None  # an onnxruntime.InferenceSession

    @torch.inference_mode()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, S, S), or (B, 1, S, S, S) for volumes, normalized -> (B, K) logits, or
        (B, K, S, S) for segmentation."""
        if self.session is not None:
            return torch.from_numpy(self.session.run([ONNX_OUTPUT], {ONNX_INPUT: x.numpy()})[0])
        return self.module(x).float()

    def class_name(self, k: int) -> str | None:
        return self.classes[k] if self.classes else None

    def metadata(self) -> dict:
        """What predicting needs besides the network (stored in an ONNX file)."""
        return {"task": self.task, "classes": self.classes, "num_classes": self.num_classes,
                "preprocess": self.preprocess.to_dict()}


def open_model(checkpoint: str | Path, mean: list[float] | None = None,
               std: list[float] | None = None, crop_pct: float | None = None,
               log=print) -> InferenceModel:
    """Open any checkpoint for inference; `mean`, `std` and `crop_pct` (a resize of the
    shorter side to S / crop_pct and a centre crop) override its own preprocessing."""
    path = Path(checkpoint)
    if path.suffix == ".onnx":
        model = _open_onnx(path)
    elif run_dir_of(path) is not None:
        model = _open_run(path, log)
    else:
        model = _open_weights(path, log)
    changes = {k: tuple(v) for k, v in (("mean", mean), ("std", std)) if v is not None}
    if crop_pct is not None:
        if model.preprocess.volumes:
            raise UsageError(f"--crop-pct: {checkpoint} takes volumes, resized whole")
        changes.update(resize="crop", crop_pct=crop_pct)
    if changes:
        model.preprocess = dataclasses.replace(model.preprocess, **changes)
    return model


def _open_run(path: Path, log) -> InferenceModel:
    run = run_dir_of(path)
    cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    state = read_weights(path)
    info = read_data_info(run) or _data_info_from_dataset(cfg, run, log)
    C = info["in_chans"]
    pre = for_dataset(info["dataset"], cfg.data.img_size, C, info["mean"], info["std"],
                      cfg.model.spatial_dims, cfg.data.volume, cfg.task)
    if is_mae(state):  # an MAE run: its encoder
        encoder = build_vit(cfg.model, cfg.data.img_size, C, num_classes=0)
        encoder.load_state_dict(encoder_state(state), strict=True)
        return InferenceModel(FEATURES, pre, None, 0, str(path), encoder.eval(), encoder)
    model, encoder, _ = build_finetune_model(cfg, C, info["num_classes"])
    model.load_state_dict(state, strict=True)
    return InferenceModel(cfg.task, pre, info["classes"], info["num_classes"], str(path),
                          model.eval(), encoder)


def _data_info_from_dataset(cfg: Config, run: Path, log) -> dict:
    """What dataset.json would hold, from the run's evaluation data set (needs its data)."""
    log(f"{run}: no dataset.json (the run predates it); reading the class names and "
        f"normalisation from its data set '{cfg.data.dataset}'")
    ds = build_dataset(cfg.data, cfg.data.val_split, train=False)
    return {"dataset": cfg.data.dataset, "classes": getattr(ds, "classes", None),
            "num_classes": ds.num_classes, "in_chans": ds.in_chans, "mean": ds.mean,
            "std": ds.std}


def _open_weights(path: Path, log) -> InferenceModel:
    src = read_source(path)
    a = src.arch
    cfg = Config()
    cfg.model.arch, cfg.model.drop_path = FROM_WEIGHTS, 0.0
    cfg.data.img_size = a["img_size"]  # the position grid's: the size it was trained at
    adopt_source(cfg, src, log)
    encoder = build_vit(cfg.model, a["img_size"], a["in_chans"], a["num_classes"])
    load_into(encoder, src, keep_head=True, log=log)
    if src.mean is None:
        log(f"{path}: no normalisation in the file; using ImageNet's mean and std "
            f"(--mean / --std to change)")
    mean, std = src.mean or IMAGENET_MEAN, src.std or IMAGENET_STD
    pre = for_weights(a["img_size"], a["in_chans"], mean, std, WEIGHTS_CROP_PCT)
    task = "classify" if a["num_classes"] else FEATURES
    labels = src.labels or imagenet_names(src, log)
    return InferenceModel(task, pre, labels, a["num_classes"], str(path), encoder.eval(),
                          encoder)


def imagenet_names(src, log) -> list[str] | None:
    """The ImageNet-1k class names of a timm file with a 1,000-class head, from the list timm
    ships (the file itself carries none); None for other heads, or without timm."""
    if src.format != "timm" or src.arch["num_classes"] != IMAGENET_CLASSES:
        return None
    try:
        from timm.data import ImageNetInfo
    except ImportError:
        log(f"{src.path}: a 1,000-class head, named by index (pip install timm for the "
            f"ImageNet-1k class names)")
        return None
    info = ImageNetInfo("imagenet-1k")
    return [info.index_to_description(i) for i in range(IMAGENET_CLASSES)]


def _open_onnx(path: Path) -> InferenceModel:
    import onnxruntime as ort

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map.get(ONNX_META)
    if meta is None:
        raise UsageError(f"{path}: no '{ONNX_META}' metadata (task, classes, preprocessing); "
                         f"export the model with `vitmae export RUN --to onnx`")
    d = json.loads(meta)
    return InferenceModel(d["task"], Preprocess.from_dict(d["preprocess"]), d["classes"],
                          d["num_classes"], str(path), session=session)

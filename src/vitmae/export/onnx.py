"""`export_onnx`: a classification or segmentation model as an ONNX file, for onnxruntime.

The graph takes `pixel_values` (B, C, S, S), or (B, 1, S, S, S) for a model of volumes,
normalized as the model's preprocessing says, and gives `logits` (B, K) or (B, K, S, S); the
batch axis is dynamic, the image size fixed.
What `vitmae predict` needs besides the graph (task, class names, image size, channels,
normalisation, resize) is stored as JSON under the metadata key `vitmae`. It is written by
torch's TorchScript exporter (the torch.export-based one needs the onnxscript package).
With `int8`, the matrix multiplications are quantised to 8 bits (`vitmae.export.int8`).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

from vitmae.errors import UsageError
from vitmae.export.int8 import fp32_parts, massive_activation_layers, quantize_int8
from vitmae.export.onnx_attention import DOMAIN, ort_attention
from vitmae.infer.model import (
    FEATURES,
    ONNX_INPUT,
    ONNX_META,
    ONNX_OUTPUT,
    InferenceModel,
    open_model,
)

OPSET = 17


def fix_negative_perms(graph) -> None:
    """The TorchScript exporter writes `movedim(-1, 1)` as a Transpose with a negative axis,
    which ONNX forbids: make each perm entry positive (its rank is the perm's length)."""
    for node in graph.node:
        if node.op_type != "Transpose":
            continue
        for attr in node.attribute:
            if attr.name == "perm" and any(p < 0 for p in attr.ints):
                fixed = [p % len(attr.ints) for p in attr.ints]
                del attr.ints[:]
                attr.ints.extend(fixed)


def set_metadata(model, meta: dict) -> None:
    """Store `meta` as JSON under ONNX_META in the model's metadata_props (replacing it)."""
    for prop in list(model.metadata_props):
        if prop.key == ONNX_META:
            model.metadata_props.remove(prop)
    prop = model.metadata_props.add()
    prop.key, prop.value = ONNX_META, json.dumps(meta)


def export_onnx(checkpoint: str | Path, out: str | Path, int8: bool = False,
                log=print, portable: bool = False) -> Path:
    """Export the model of `checkpoint` (a run or a weights file with a head) to `out`."""
    return export_model(open_model(checkpoint, log=log), out, int8, log, portable=portable)


def export_model(model: InferenceModel, out: str | Path, int8: bool = False,
                 log=print, portable: bool = False, gemm: bool = True) -> Path:
    """Export an opened model to `out` (.onnx), its metadata included; with `int8`, the
    matrix multiplications by weights are quantised except those `vitmae.export.int8` keeps in
    fp32. Attention is onnxruntime's fused node (`vitmae.export.onnx_attention`) unless
    `portable`, which keeps to the standard operators; in fp32, the blocks' linear layers
    are Gemm nodes on rows unless `gemm` is False (MatMul + Add, for comparison)."""
    import onnx  # an optional dependency: pip install 'vitmae[onnx]'

    if model.module is None:
        raise UsageError(f"{model.source}: already an exported model")
    if model.task == FEATURES:
        raise UsageError(f"{model.source}: no classification or segmentation head to export "
                         f"(an MAE run or headless weights)")
    pre = model.preprocess
    if int8 and pre.volumes:
        raise UsageError(f"{model.source}: --int8 is for models of 2-D images (its outlier "
                         f"check feeds images); export volumes in fp32")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, *pre.input_shape)  # (B, C, S, S) or (B, 1, S, S, S)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        fused = nullcontext(0) if portable else ort_attention(model.module, gemm=gemm and not int8)
        with warnings.catch_warnings(), fused:  # the exporter's notes on tracing, deprecation
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(model.module, (dummy,), str(fp32), dynamo=False,
                              input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                              dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
                              opset_version=OPSET, custom_opsets={DOMAIN: 1})
        graph = onnx.load(str(fp32))
        fix_negative_perms(graph.graph)
        onnx.checker.check_model(graph)
        if int8:
            outliers = massive_activation_layers(model.module, pre.in_chans, pre.img_size)
            onnx.save(graph, str(fp32))
            quantize_int8(fp32, Path(tmp) / "int8.onnx", Path(tmp), tuple(fp32_parts(outliers)))
            graph = onnx.load(str(Path(tmp) / "int8.onnx"))
            if outliers:
                log(f"int8: kept in fp32 for a massive activation in their input: "
                    f"{', '.join(outliers)}")
        set_metadata(graph, model.metadata())
        onnx.save(graph, str(out))
    kind = "standard operators" if portable else "onnxruntime's fused attention"
    shape = ", ".join(map(str, pre.input_shape))
    log(f"wrote {out} ({model.task}, {'int8 weights' if int8 else 'fp32'}, {kind}, input "
        f"(batch, {shape}))")
    return out

"""ONNX export: onnxruntime gives PyTorch's outputs (within 1e-4) at any batch size, with
onnxruntime's fused attention node or with standard operators only, the metadata lets
`vitmae predict` run the file, int8 quantisation; `--to` dispatch."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types

import numpy as np
import pytest
import torch
from inference_runs import cli, folder_run, mae_run
from PIL import Image

from vitmae.config import load_config
from vitmae.export.onnx import export_model
from vitmae.infer.model import ONNX_META, InferenceModel, open_model
from vitmae.infer.preprocess import Preprocess
from vitmae.models import build_finetune_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def run_onnx(path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"pixel_values": x.numpy()})[0])


def op_types(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def micro_model(task: str, classes: int, *overrides: str) -> InferenceModel:
    """A random micro model for `task` (grey 16 px, 2 blocks) opened for inference."""
    cfg = load_config("digits", [f"task={task}", "model.arch=vit_micro_patch4", *overrides])
    torch.manual_seed(0)
    model, encoder, _ = build_finetune_model(cfg, 1, classes)
    pre = Preprocess(16, 1, (0.5,), (0.25,))
    return InferenceModel(task, pre, None, classes, "test", model.eval(), encoder)


def segmenter(*overrides: str) -> InferenceModel:
    """A random micro segmentation model (11 classes) opened for inference."""
    return micro_model("segment", 11, *overrides)


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize("overrides, fused", [
    (["model.seg_head=linear", "model.seg_aux=0.4"], 2),  # one fused node per block
    (["model.seg_head=pup", "model.rope=true"], 0),  # RoPE: the traced attention
])
def test_segmentation_models_export_with_a_dynamic_batch(tmp_path, overrides, fused, portable):
    model = segmenter(*overrides)
    path = export_model(model, tmp_path / "seg.onnx", log=lambda _: None, portable=portable)
    assert op_types(path).count("Attention") == (0 if portable else fused)
    for B in (1, 3):
        x = torch.randn(B, 1, 16, 16)
        got = run_onnx(path, x)
        assert got.shape == (B, 11, 16, 16)
        assert torch.allclose(got, model.logits(x), atol=1e-4)
    assert all(type(m).forward is m.forward.__func__  # the model's own forward is back
               for m in model.module.modules() if hasattr(m, "qkv"))


def test_the_fused_node_computes_the_blocks_attention(tmp_path):
    """One Attention module alone: onnxruntime's com.microsoft.Attention node, given the
    module's qkv weight and bias, gives the module's output, with and without a qkv bias."""
    from vitmae.export.onnx_attention import DOMAIN, ort_attention
    from vitmae.models.blocks import Attention

    for bias in (True, False):
        torch.manual_seed(0)
        attn = Attention(24, 3, qkv_bias=bias).eval()
        x = torch.randn(2, 7, 24)  # (B, N, D)
        path = tmp_path / f"attn{bias}.onnx"
        with ort_attention(attn) as switched:  # inside a parent, as in a model
            torch.onnx.export(torch.nn.Sequential(attn), (x,), str(path), dynamo=False,
                              input_names=["x"], output_names=["y"], opset_version=17,
                              custom_opsets={DOMAIN: 1})
        assert switched == 1 and op_types(path).count("Attention") == 1
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
        assert torch.allclose(got, attn(x), atol=1e-5)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return folder_run(tmp_path_factory.mktemp("onnx"))


def test_a_classifier_exports_and_predict_runs_the_file(run, tmp_path):
    out = tmp_path / "cls.onnx"
    rc, _, err = cli(["export", run, "--to", "onnx", out])
    assert rc == 0, err
    torch_model = open_model(run)
    x = torch.randn(5, 3, 16, 16)
    assert torch.allclose(run_onnx(out, x), torch_model.logits(x), atol=1e-4)
    assert op_types(out).count("Attention") == 2
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta[ONNX_META]) == torch_model.metadata()
    images = run.parent / "data" / "test"
    by_torch, by_onnx = (
        {r["path"]: r["topk"] for r in map(json.loads, cli(["predict", "--checkpoint", c,
                                                             images])[1])}
        for c in (run, out))
    assert by_torch.keys() == by_onnx.keys() and len(by_torch) == 6
    for path, top in by_torch.items():
        for a, b in zip(top, by_onnx[path], strict=True):
            assert a["class"] == b["class"] and a["prob"] == pytest.approx(b["prob"], abs=1e-4)


def test_int8_quantises_the_matmuls_and_still_predicts(run, tmp_path):
    out = tmp_path / "int8.onnx"
    assert cli(["export", run, "--to", "onnx", out, "--int8"])[0] == 0
    nodes = onnx.load(str(out)).graph.node
    quantised = [n.name for n in nodes if n.op_type == "MatMulInteger"]
    assert "DynamicQuantizeLinear" in {n.op_type for n in nodes}
    assert [n.op_type for n in nodes].count("QAttention") == 2  # the fused qkv + attention
    for part in ("proj", "fc1", "fc2"):  # in each of the 2 blocks; patches and head: fp32
        assert sum(f"/{part}/" in name for name in quantised) == 2
    assert len(quantised) == 6
    rc, lines, err = cli(["predict", "--checkpoint", out, run.parent / "data" / "test"])
    assert rc == 0 and len(lines) == 6, err
    x = torch.randn(4, 3, 16, 16)
    assert np.isfinite(run_onnx(out, x).numpy()).all()


def test_a_model_without_a_head_or_an_onnx_without_metadata_is_refused(tmp_path):
    rc, _, err = cli(["export", mae_run(tmp_path), "--to", "onnx", tmp_path / "m.onnx"])
    assert rc == 2 and "head" in err and not (tmp_path / "m.onnx").exists()
    bare = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["pixel_values"], ["logits"])], "g",
        [onnx.helper.make_tensor_value_info("pixel_values", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1])]))
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    rc, _, err = cli(["predict", "--checkpoint", tmp_path / "bare.onnx", tmp_path / "x.png"])
    assert rc == 2 and "vitmae export" in err


def test_other_formats_go_to_the_weights_exporter(monkeypatch, tmp_path):
    calls = []
    fake = types.ModuleType("vitmae.weights.export")
    fake.__spec__ = importlib.machinery.ModuleSpec("vitmae.weights.export", None)
    fake.export_run = lambda run, fmt, out: calls.append((run, fmt, out)) or out
    monkeypatch.setitem(sys.modules, "vitmae.weights.export", fake)
    rc, lines, _ = cli(["export", tmp_path / "run", "--to", "timm", tmp_path / "w.safetensors"])
    assert rc == 0 and calls == [(str(tmp_path / "run"), "timm", str(tmp_path / "w.safetensors"))]
    assert lines == [f"wrote {tmp_path / 'w.safetensors'}"]
    rc, _, err = cli(["export", tmp_path / "run", "--to", "hf", tmp_path / "x", "--int8"])
    assert rc == 2 and "--int8" in err


def test_fp32_linear_layers_export_as_gemm_and_int8_keeps_them_quantisable(tmp_path):
    model = micro_model("classify", 10)  # 2 blocks: proj, fc1, fc2 each, and the head
    fp32 = op_types(export_model(model, tmp_path / "fp32.onnx", log=lambda _: None))
    assert fp32.count("Gemm") == 2 * 3 + 1 and fp32.count("MatMul") == 1  # the patch embedding
    # onnxruntime's dynamic quantisation takes MatMul, not Gemm: int8 files keep MatMul
    int8 = op_types(export_model(model, tmp_path / "int8.onnx", int8=True, log=lambda _: None))
    assert "Gemm" not in int8 and int8.count("MatMulInteger") == 2 * 3  # proj, fc1, fc2

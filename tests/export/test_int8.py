"""int8 export (`vitmae.export.int8`): exporter scopes, massive activations found on noise and
kept in fp32, and what that saves against quantising them."""

from __future__ import annotations

import pytest
import torch

from export.test_onnx import micro_model, run_onnx, segmenter
from vitmae.export.int8 import fp32_parts, massive_activation_layers, onnx_scope, quantize_int8
from vitmae.export.onnx import export_model

onnx = pytest.importorskip("onnx")


def classifier(massive: float = 0.0):
    """A random micro classifier (10 classes, 2 blocks); with `massive`, one channel of the
    last block's MLP hidden layer is pushed to about that value for every token (its fc1
    bias), as trained ViTs grow them."""
    model = micro_model("classify", 10)
    with torch.no_grad():  # a head of unit scale: the logits carry the features' errors
        model.module.head.weight.normal_(generator=torch.Generator().manual_seed(0))
        if massive:
            model.encoder.blocks[-1].mlp.fc1.bias[3] = massive
    return model


def test_onnx_scope_is_the_exporters_node_prefix():
    assert onnx_scope("blocks.7.mlp.fc2") == "/blocks.7/mlp/fc2/"
    assert onnx_scope("encoder.blocks.0.attn.proj") == "/encoder/blocks.0/attn/proj/"
    assert onnx_scope("head") == "/head/"
    # a fused attention holds its input projection: the whole attention scope stays fp32
    assert fp32_parts(["blocks.1.attn.qkv", "blocks.1.mlp.fc2"]) == [
        "/blocks.1/attn/", "/blocks.1/mlp/fc2/"]


def test_a_massive_activation_is_found_on_noise_and_only_there():
    assert massive_activation_layers(classifier().module, 1, 16) == []
    model = classifier(massive=300.0).module.train()
    assert massive_activation_layers(model, 1, 16) == ["blocks.1.mlp.fc2"]
    assert model.training  # the model's mode is given back


@pytest.mark.slow
def test_int8_keeps_the_layer_with_a_massive_activation_and_stays_closer(tmp_path):
    model = classifier(massive=300.0)
    out = export_model(model, tmp_path / "int8.onnx", int8=True, log=lambda _: None)
    nodes = {n.name: n.op_type for n in onnx.load(str(out)).graph.node}
    fc2 = {name: op for name, op in nodes.items() if "/mlp/fc2/" in name}
    assert fc2["/blocks.1/mlp/fc2/MatMul"] == "MatMul"  # fp32
    assert "MatMulInteger" in fc2.values()  # block 0's fc2 is still quantised
    # the same graph with every layer quantised: further from fp32
    fp32 = export_model(model, tmp_path / "fp32.onnx", log=lambda _: None)
    every = tmp_path / "every.onnx"
    quantize_int8(fp32, every, tmp_path)
    assert "/blocks.1/mlp/fc2/MatMul" not in {n.name for n in onnx.load(str(every)).graph.node}
    x = torch.randn(16, 1, 16, 16)
    ref = model.logits(x)
    kept, lost = ((run_onnx(p, x) - ref).abs().mean().item() for p in (out, every))
    assert kept < lost / 2, (kept, lost)


def test_a_scope_that_names_no_node_is_an_error(tmp_path):
    fp32 = export_model(classifier(), tmp_path / "fp32.onnx", log=lambda _: None)
    with pytest.raises(RuntimeError, match="/blocks.9/mlp/fc2/"):
        quantize_int8(fp32, tmp_path / "q.onnx", tmp_path, ("/blocks.9/mlp/fc2/",))


@pytest.mark.slow
def test_int8_exports_segmentation_heads_too(tmp_path, monkeypatch):
    # the progressive-upsampling head defeats onnxruntime's symbolic shape inference, which
    # then writes debug files into the current folder: not the user's
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    for head in ("pup", "linear"):
        model = segmenter(f"model.seg_head={head}")
        out = export_model(model, tmp_path / f"{head}.onnx", int8=True, log=lambda _: None)
        ops = [n.op_type for n in onnx.load(str(out)).graph.node]
        assert ops.count("QAttention") == 2 and "MatMulInteger" in ops
        x = torch.randn(2, 1, 16, 16)
        got, ref = run_onnx(out, x), model.logits(x)
        assert got.shape == ref.shape == (2, 11, 16, 16)
        assert (got - ref).abs().mean() < 0.05 * ref.abs().mean()
    assert list(cwd.iterdir()) == []

"""int8 for an exported ONNX graph: what stays in fp32, and onnxruntime's dynamic quantisation.

`quantize_int8` quantises the weights of the matrix multiplications to 8 bits per output
channel, and their inputs on the fly with one scale per tensor (onnxruntime's
`quantize_dynamic`); each fused attention becomes one `QAttention` node. Kept in fp32:
- always (`INT8_SKIP`): the patch embedding, which reads the pixels, and the head, which makes
  the logits;
- the linear layers whose input holds a massive activation (`massive_activation_layers`):
  trained ViTs grow, in a few fixed channels, activations hundreds of times larger than the
  rest, whatever the input (Sun et al. 2024, "Massive activations in large language models",
  which shows them in ViTs too). One 8-bit scale per tensor stretched over such a value leaves
  the other channels a handful of levels, and the model's predictions change. They show up on
  noise as on photos, so they are found without data: the model is run on seeded noise and a
  layer is kept in fp32 when one input channel's largest value exceeds `OUTLIER_RATIO` times
  the median over channels (ordinary channels stay within a small multiple of the median, a
  massive activation is two orders of magnitude above it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

INT8_SKIP = ("/patch_embed/", "/head/")  # node name parts always kept in fp32 (see above)
OUTLIER_RATIO = 32.0  # a channel's max over the median channel max: a massive activation


def onnx_scope(name: str) -> str:
    """The node name prefix that torch's TorchScript exporter gives the module `name`:
    'encoder.blocks.7.mlp.fc2' -> '/encoder/blocks.7/mlp/fc2/' (a list index stays with its
    list's name)."""
    parts: list[str] = []
    for part in name.split("."):
        if part.isdigit() and parts:
            parts[-1] += f".{part}"
        else:
            parts.append(part)
    return "/" + "/".join(parts) + "/"


@torch.no_grad()
def massive_activation_layers(module: nn.Module, in_chans: int, img_size: int,
                              images: int = 8, seed: int = 0) -> list[str]:
    """Names of the linear layers of `module` whose input, on `images` seeded noise images
    (B, in_chans, img_size, img_size) in the normalized range, has a channel whose largest
    magnitude exceeds OUTLIER_RATIO times the median channel's."""
    ratios: dict[str, float] = {}

    def hook(name: str):
        def record(_mod, inputs, _out):
            peak = inputs[0].abs().flatten(0, -2).amax(0)  # (C_in,) each channel's max
            ratio = (peak.max() / peak.median().clamp(min=1e-12)).item()
            ratios[name] = max(ratio, ratios.get(name, 0.0))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules()
               if isinstance(m, nn.Linear)]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(images, in_chans, img_size, img_size, generator=gen).clamp(-2, 2)
    training = module.training
    try:
        module.eval()
        module(x)
    finally:
        module.train(training)
        for h in handles:
            h.remove()
    return [n for n, r in ratios.items() if r > OUTLIER_RATIO]


def fp32_parts(names: list[str]) -> list[str]:
    """Node name parts that keep the layers `names` in fp32. The input projection of a fused
    attention is inside its `Attention` node: the whole attention scope stays fp32 then."""
    return [onnx_scope(n.rsplit(".", 1)[0] if n.endswith(".qkv") else n) for n in names]


def quantize_int8(fp32: Path, out: Path, work: Path, keep: tuple[str, ...] = ()) -> None:
    """Quantise the ONNX file `fp32` into `out` (temporary files in `work`); the nodes whose
    name contains one of INT8_SKIP or `keep` stay fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    shaped = work / "shaped.onnx"
    preprocess(fp32, shaped, work)
    parts = (*INT8_SKIP, *keep)
    skip = [n.name for n in onnx.load(str(shaped)).graph.node
            if any(part in n.name for part in parts)]
    unmatched = [p for p in keep if not any(p in n for n in skip)]
    if unmatched:  # a scope that names no node would silently quantise the layer
        raise RuntimeError(f"int8: no node of the graph is in {unmatched}")
    # reduce_range: 7-bit weights, so that the u8 x s8 products of CPUs without VNNI (AVX2's
    # VPMADDUBSW) cannot saturate, as onnxruntime's quantisation guide advises
    quantize_dynamic(str(shaped), str(out), weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=True,
                     nodes_to_exclude=skip + [f"{name}_MatMul" for name in skip])  # Gemm's


def preprocess(fp32: Path, out: Path, work: Path) -> None:
    """onnxruntime's shape inference and fusions before quantising (its advice), run as a child
    process in the folder `work`: its symbolic shape inference, which gives up on some graphs
    (upsampling heads), then writes debug files into the working folder, and the caller's
    working folder is not to be changed. On that failure it runs again without it."""
    cmd = [sys.executable, "-m", "onnxruntime.quantization.preprocess",
           "--input", str(Path(fp32).resolve()), "--output", str(Path(out).resolve())]
    if subprocess.run(cmd, cwd=work, capture_output=True).returncode != 0:
        done = subprocess.run([*cmd, "--skip_symbolic_shape", "True"], cwd=work,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"int8: onnxruntime's preprocessing of {fp32} failed:\n"
                               f"{done.stderr[-2000:]}")

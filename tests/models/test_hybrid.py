"""The hybrid encoder (`model.stem=conv`) and its U-Net head: shapes for every task, gradients,
MAE's masked stem hides removed patches (and only those), timm names of the shared layers,
weights that refuse to mis-load, config errors naming the key, and the CLI end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from cli.test_cli import run_cli
from data.test_mnist import write_mnist

from vitmae.config import Config, ConfigError, ModelConfig, load_config
from vitmae.export.onnx import export_model
from vitmae.infer.model import open_model
from vitmae.models import build_finetune_model
from vitmae.models.mae import build_mae, random_masking
from vitmae.models.segmenter import build_segmenter
from vitmae.models.vit import build_vit
from vitmae.runs.checkpoint import CheckpointError
from vitmae.weights.arch import infer_arch
from vitmae.weights.export import ExportError, export_run
from vitmae.weights.pretrained import adopt, load_into
from vitmae.weights.source import read_source

# vit_micro_patch4 (D=32, 2 blocks, p=4) as a hybrid: stem stages of 8 and 16 channels
HYBRID = dict(arch="vit_micro_patch4", drop_path=0.0, stem="conv", stem_width=8,
              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


def hybrid_cfg(**extra) -> ModelConfig:
    return ModelConfig(**{**HYBRID, **extra})


@pytest.mark.parametrize("size,patch", [(16, 4), ((16, 24), 4), (32, 8), (16, 2)])
def test_classifier_and_mae_shapes(size, patch):
    torch.manual_seed(0)
    H, W = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, 3, H, W)
    vit = build_vit(hybrid_cfg(patch_size=patch), size, in_chans=3, num_classes=7)
    assert vit(x).shape == (2, 7)
    mae = build_mae(hybrid_cfg(patch_size=patch), size, in_chans=3)
    loss, pred, mask = mae(x)
    L = (H // patch) * (W // patch)
    assert loss.ndim == 0 and pred.shape == (2, L, patch * patch * 3) and mask.shape == (2, L)


@pytest.mark.parametrize("head", ["unet", "pup", "linear"])
@pytest.mark.parametrize("size,patch", [(16, 4), ((16, 24), 4), (32, 8), (16, 2)])
def test_segmenter_logits_at_input_resolution(head, size, patch):
    H, W = (size, size) if isinstance(size, int) else size
    model = build_segmenter(hybrid_cfg(patch_size=patch, seg_head=head, seg_aux=0.4), size,
                            in_chans=3, num_classes=5)
    logits, aux = model(torch.randn(2, 3, H, W))
    assert logits.shape == aux.shape == (2, 5, H, W)
    assert model.eval()(torch.randn(1, 3, H, W)).shape == (1, 5, H, W)


def every_grad_nonzero(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]


def test_every_parameter_of_the_hybrid_segmenter_gets_a_gradient():
    torch.manual_seed(0)
    model = build_segmenter(hybrid_cfg(seg_head="unet", seg_aux=0.4), 16, 1, 4)
    target = torch.randint(0, 4, (2, 16, 16))
    logits, aux = model(torch.randn(2, 1, 16, 16))
    (F.cross_entropy(logits, target) + F.cross_entropy(aux, target)).backward()
    assert not every_grad_nonzero(model)


def test_every_parameter_of_the_hybrid_mae_and_classifier_gets_a_gradient():
    torch.manual_seed(0)
    mae = build_mae(hybrid_cfg(), 16, 1)
    mae(torch.randn(2, 1, 16, 16))[0].backward()
    assert not every_grad_nonzero(mae)
    vit = build_vit(hybrid_cfg(), 16, 1, num_classes=3)
    F.cross_entropy(vit(torch.randn(2, 1, 16, 16)), torch.tensor([0, 2])).backward()
    assert not every_grad_nonzero(vit)


def test_gradients_come_in_their_parameters_layout():
    # as the PUP head: DDP's buckets take the weights' strides and warn when a gradient's differ
    model = build_segmenter(hybrid_cfg(seg_head="unet", patch_size=8), 32, 1, 5)
    model(torch.randn(16, 1, 32, 32)).sum().backward()
    mae = build_mae(hybrid_cfg(patch_size=8), 32, 1)
    mae(torch.randn(16, 1, 32, 32))[0].backward()
    for m in (model, mae):
        assert not [n for n, p in m.named_parameters() if p.grad.stride() != p.stride()]


# MAE with the hybrid: a 4x4 grid of 4 px patches, half of them removed by a fixed noise.
NOISE = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4,
                       0.15, 0.85, 0.25, 0.75, 0.35, 0.65, 0.45, 0.55]])


def kept_tokens(encoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (encoder output of the kept patches (1, 1+L_keep, D), ids_keep, mask)."""
    ids_keep, mask, _ = random_masking(1, 16, 0.5, noise=NOISE)
    return encoder.forward_features(x, ids_keep), ids_keep, mask


def with_patch(x: torch.Tensor, patch: int, value: torch.Tensor) -> torch.Tensor:
    """x (1, C, 16, 16) with patch `patch` (row-major on the 4x4 grid) set to `value`."""
    r, c = divmod(patch, 4)
    y = x.clone()
    y[..., 4 * r:4 * r + 4, 4 * c:4 * c + 4] = value
    return y


def test_removed_patches_do_not_leak_into_the_kept_tokens():
    torch.manual_seed(0)
    encoder = build_mae(hybrid_cfg(), 16, 1).encoder.eval()
    x = torch.randn(1, 1, 16, 16)
    before, _, mask = kept_tokens(encoder, x)
    removed = mask[0].nonzero().flatten().tolist()
    assert len(removed) == 8
    y = x
    for i in removed:  # new pixels under every removed patch, neighbours of the kept ones
        y = with_patch(y, i, 10 * torch.randn(4, 4))
    torch.testing.assert_close(kept_tokens(encoder, y)[0], before, rtol=0, atol=1e-6)


def test_a_kept_patch_changes_the_kept_tokens():
    # the companion of the test above: the same comparison does see a kept patch's pixels
    torch.manual_seed(0)
    encoder = build_mae(hybrid_cfg(), 16, 1).encoder.eval()
    x = torch.randn(1, 1, 16, 16)
    before, _, mask = kept_tokens(encoder, x)
    kept = (mask[0] == 0).nonzero().flatten().tolist()
    after = kept_tokens(encoder, with_patch(x, kept[0], 10 * torch.randn(4, 4)))[0]
    assert (after - before).abs().amax() > 1e-2


def test_unmasked_the_stem_does_see_across_patches():
    # why the stem is masked: its 3x3 windows overlap, so without the mask one patch's pixels
    # reach its neighbours' tokens (those right of and below it: a stride-2 window with padding
    # 1 reads one pixel before its own two)
    torch.manual_seed(0)
    stem = build_vit(hybrid_cfg(), 16, 1).patch_embed
    x = torch.randn(1, 1, 16, 16)
    moved = (stem(with_patch(x, 5, 10 * torch.randn(4, 4))) - stem(x)).abs().amax(-1)  # (1, L)
    assert moved[0, 5] > 1e-3 and moved[0, [6, 9, 10]].min() > 1e-3


def test_the_hybrid_encoder_is_equivariant_to_permuting_the_kept_patches():
    torch.manual_seed(0)
    encoder = build_mae(hybrid_cfg(rope=True), 16, 1).encoder.eval()
    x = torch.randn(2, 1, 16, 16)
    ids_keep, _, _ = random_masking(2, 16, 0.75, generator=torch.Generator().manual_seed(1))
    perm = torch.tensor([2, 0, 3, 1])
    out = encoder.forward_features(x, ids_keep)[:, 1:]  # (B, L_keep, D)
    out_perm = encoder.forward_features(x, ids_keep[:, perm])[:, 1:]
    torch.testing.assert_close(out_perm, out[:, perm], rtol=0, atol=1e-5)


def test_shared_layers_keep_the_patch_vits_names_and_shapes():
    vit = build_vit(ModelConfig(**{**HYBRID, "stem": "patch"}), 16, 1).state_dict()
    hybrid = build_vit(hybrid_cfg(), 16, 1).state_dict()
    stem = {k for k in hybrid if k.startswith("patch_embed.stem.")}
    assert stem and set(hybrid) - stem == set(vit)
    assert {k for k in vit if hybrid[k].shape != vit[k].shape} == {"patch_embed.proj.weight"}
    assert hybrid["patch_embed.proj.weight"].shape == (32, 16, 1, 1)  # 1x1, as timm's hybrids


def test_infer_arch_reads_the_stem():
    a = infer_arch(build_vit(hybrid_cfg(patch_size=8), 32, 3).state_dict())
    assert (a["stem"], a["stem_width"], a["patch_size"], a["in_chans"], a["img_size"]) == (
        "conv", 8, 8, 3, 32)
    assert infer_arch(build_vit(ModelConfig(), 16, 1).state_dict())["stem"] == "patch"


@pytest.mark.parametrize("overrides,key", [
    (["model.seg_head=unet"], "model.seg_head"),
    (["model.stem=convnext"], "model.stem"),
    (["model.stem=conv", "model.patch_size=6", "data.img_size=24"], "model.stem"),
    (["model.stem=conv", "model.stem_width=0"], "model.stem_width"),
])
def test_bad_combinations_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("digits", ["task=segment", *overrides])


@pytest.fixture(scope="module")
def hybrid_runs(tmp_path_factory):
    """MAE 1 step, then segmentation fine-tuning 1 step from it, with the hybrid + unet."""
    root = tmp_path_factory.mktemp("hybrid")
    write_mnist(root / "data")
    common = ["-c", "mnist_seg_hybrid", *(f"model.{k}={v}" for k, v in HYBRID.items()),
              f"data.root={root / 'data'}", "data.img_size=16", "data.batch_size=20",
              "data.num_workers=0", "data.subset=20", f"run.output_dir={root}",
              "run.log_interval=1"]
    run_cli(["pretrain", *common, "pretrain.optim.epochs=1", "pretrain.recon_every=0",
             "run.name=pre"])
    run_cli(["finetune", *common, "finetune.optim.epochs=1", "run.name=fin",
             f"finetune.pretrained={root / 'pre'}"])
    return root


def test_pretrain_then_finetune_the_hybrid_through_the_cli(hybrid_runs):
    records = [json.loads(line) for line in (hybrid_runs / "fin" / "metrics.jsonl").open()]
    assert any("miou" in r for r in records)
    pre = read_source(hybrid_runs / "pre").encoder
    fin = read_source(hybrid_runs / "fin").encoder
    assert set(pre) == set(fin) and any(k.startswith("patch_embed.stem.") for k in fin)
    # the one step is the warmup's first, at lr 0: the fine-tuned stem is the loaded one
    torch.testing.assert_close(fin["patch_embed.stem.0.conv.weight"],
                               pre["patch_embed.stem.0.conv.weight"], rtol=0, atol=0)


def test_hybrid_weights_refuse_a_patch_model_and_a_patch_model_refuses_them(hybrid_runs):
    src = read_source(hybrid_runs / "pre")
    with pytest.raises(CheckpointError, match=r"model\.stem"):
        load_into(build_vit(ModelConfig(**{**HYBRID, "stem": "patch"}), 16, 1), src,
                  log=lambda _: None)
    with pytest.raises(CheckpointError, match=r"model\.patch_size"):
        load_into(build_vit(hybrid_cfg(patch_size=2), 16, 1), src, log=lambda _: None)
    cfg = load_config("mnist_seg", [f"finetune.pretrained={hybrid_runs / 'pre'}",
                                    "model.arch=vit_micro_patch4", "data.img_size=16"])
    with pytest.raises(ConfigError, match=r"model\.stem"):
        adopt(cfg, str(hybrid_runs / "pre"), log=lambda _: None)


def test_from_weights_takes_the_stem(hybrid_runs):
    cfg = Config(task="segment")
    cfg.model.arch, cfg.model.stem_width = "from_weights", 99
    cfg.finetune.pretrained = str(hybrid_runs / "pre")
    cfg.data.img_size = 16
    adopt(cfg, cfg.finetune.pretrained, log=lambda _: None)
    assert (cfg.model.stem, cfg.model.stem_width, cfg.model.patch_size) == ("conv", 8, 4)
    model, encoder, _ = build_finetune_model(cfg, 1, 11)
    assert load_into(encoder, read_source(cfg.finetune.pretrained), log=lambda _: None) == set()


@pytest.mark.parametrize("fmt", ["timm", "hf", "mae"])
def test_export_of_a_hybrid_to_other_layouts_is_refused(hybrid_runs, tmp_path, fmt):
    with pytest.raises(ExportError, match=r"model\.stem=conv"):
        export_run(hybrid_runs / "pre", fmt, tmp_path / "out")


def test_the_hybrid_segmenter_exports_to_onnx(hybrid_runs, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    model = open_model(hybrid_runs / "fin", log=lambda _: None)
    path = export_model(model, tmp_path / "hybrid.onnx", log=lambda _: None)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 16, 16)
    got = torch.from_numpy(session.run(None, {"pixel_values": x.numpy()})[0])
    assert got.shape == (3, 11, 16, 16)
    torch.testing.assert_close(got, model.logits(x), rtol=0, atol=1e-4)

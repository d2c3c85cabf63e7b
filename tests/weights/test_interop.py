"""Weights in and out: timm, HuggingFace and official MAE files against the libraries
themselves (tiny random models built here, no downloads), and round trips."""

import os
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from vitmae.config import Config, ConfigError, ModelConfig
from vitmae.models import build_mae, build_vit
from vitmae.runs.checkpoint import CheckpointError
from vitmae.weights import read_source
from vitmae.weights.export import export_run
from vitmae.weights.pretrained import adopt, load_decoder, load_into

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
quiet = dict(log=lambda *_: None)


def timm_vit(**kw):
    args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=5)
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(**{**args, **kw}).eval()
    with torch.no_grad():  # timm zero-inits some biases and the head: make every weight count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def from_file(path, img_size=32, in_chans=3, num_classes=5, task="classify", keep_head=True,
              **model):
    """Adopt `path` with model.arch=from_weights and build + load the classifier (timm files
    do not record the head count: the tests' models have 2 heads, not the guessed 1)."""
    model.setdefault("num_heads", 2)
    cfg = Config(task=task, model=ModelConfig(arch="from_weights", drop_path=0.0, **model))
    cfg.data.img_size, cfg.finetune.pretrained = img_size, str(path)
    src = adopt(cfg, str(path), **quiet)
    vit = build_vit(cfg.model, img_size, in_chans, num_classes=num_classes).eval()
    load_into(vit, src, keep_head=keep_head, **quiet)
    return vit, cfg, src


TIMM_LAYOUTS = {
    "token": dict(global_pool="token"),
    "avg_fc_norm": dict(global_pool="avg"),  # timm's default: fc_norm, no final norm
    "no_class_token": dict(class_token=False, global_pool="avg"),
    "no_qkv_bias_mlp2": dict(qkv_bias=False, mlp_ratio=2.0, global_pool="token"),
}


@pytest.mark.parametrize("layout", list(TIMM_LAYOUTS))
@pytest.mark.parametrize("wrapper", ["safetensors", "model", "state_dict"])
def test_timm_import_equals_timm(tmp_path, layout, wrapper):
    ref = timm_vit(**TIMM_LAYOUTS[layout])
    if wrapper == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file(ref.state_dict(), str(path))
    else:
        path = tmp_path / "w.pth"
        torch.save({wrapper: ref.state_dict(), "epoch": 3}, path)
    vit, _, src = from_file(path)
    assert src.format == "timm"
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vit.forward_features(x), ref.forward_features(x),
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(vit(x), ref(x), atol=1e-5, rtol=0)


def test_timm_export_loads_strictly_and_round_trips(tmp_path):
    ref = timm_vit(global_pool="token")
    save_file(ref.state_dict(), str(tmp_path / "w.safetensors"))
    run = _classify_run(tmp_path, tmp_path / "w.safetensors")
    out = export_run(run, "timm", tmp_path / "out.safetensors")
    again = timm_vit(global_pool="token")
    again.load_state_dict(load_file(str(out)), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), ref(x), atol=1e-5, rtol=0)
    _same_keys_and_values(load_file(str(out)), ref.state_dict())


def _classify_run(tmp_path, weights, name="run"):
    """A run folder holding the imported classifier as its checkpoint (no training)."""
    from vitmae.config import to_dict
    from vitmae.runs.checkpoint import save_checkpoint
    from vitmae.runs.folder import RunDir

    vit, cfg, _ = from_file(weights)
    cfg.model.arch = "from_weights"
    run = RunDir.create(str(tmp_path / "runs"), name, "finetune", "cifar10", to_dict(cfg))
    save_checkpoint(run.path, 0, vit, {"progress": {}}, to_dict(cfg))
    return run.path


def _same_keys_and_values(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)


def hf_mae(norm_pix_loss=True):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    cfg = ViTMAEConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=128, image_size=32, patch_size=8, num_channels=3,
                       decoder_hidden_size=16, decoder_num_hidden_layers=1,
                       decoder_num_attention_heads=2, decoder_intermediate_size=64,
                       norm_pix_loss=norm_pix_loss, mask_ratio=0.75)
    torch.manual_seed(0)
    return ViTMAEForPreTraining(cfg).eval()


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_hf_vitmae_same_loss_and_reconstruction(tmp_path, norm_pix_loss):
    ref = hf_mae(norm_pix_loss)
    ref.save_pretrained(tmp_path / "hf")
    cfg = Config(model=ModelConfig(arch="from_weights", norm_pix_loss=norm_pix_loss))
    cfg.data.img_size, cfg.pretrain.init = 32, str(tmp_path / "hf")
    src = adopt(cfg, cfg.pretrain.init, **quiet)
    assert (src.format, cfg.model.norm_eps, cfg.model.decoder_num_heads) == ("hf", 1e-12, 2)
    mae = build_mae(cfg.model, 32, 3).eval()
    load_into(mae.encoder, src, **quiet)
    assert load_decoder(mae, src, **quiet)
    x, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 16)
    with torch.no_grad():
        out = ref(pixel_values=x, noise=noise)
        loss, pred, mask = mae(x, noise=noise)
    torch.testing.assert_close(mask, out.mask, atol=0, rtol=0)
    torch.testing.assert_close(pred, out.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(loss, out.loss, atol=1e-5, rtol=0)


def test_hf_classifier_import_and_export(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    hf_cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, image_size=32, patch_size=8, num_labels=5,
                       id2label={i: f"c{i}" for i in range(5)})
    torch.manual_seed(0)
    ref = ViTForImageClassification(hf_cfg).eval()
    ref.save_pretrained(tmp_path / "hf")
    vit, _, src = from_file(tmp_path / "hf")
    assert src.labels == [f"c{i}" for i in range(5)] and vit.global_pool == "token"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vit(x), ref(pixel_values=x).logits, atol=1e-5, rtol=0)
    run = _classify_run(tmp_path, tmp_path / "hf")
    out = export_run(run, "hf", tmp_path / "back", labels=src.labels)
    again = ViTForImageClassification.from_pretrained(out).eval()
    assert again.config.id2label[3] == "c3"
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=x).logits, ref(pixel_values=x).logits,
                                   atol=1e-5, rtol=0)


def _mae_run(tmp_path):
    """A vitmae MAE run folder with a random micro MAE."""
    from vitmae.config import to_dict
    from vitmae.runs.checkpoint import save_checkpoint
    from vitmae.runs.folder import RunDir

    cfg = Config(model=ModelConfig(arch="vit_micro_patch4", decoder_embed_dim=32,
                                   decoder_depth=1, decoder_num_heads=2))
    cfg.data.img_size = 16
    torch.manual_seed(0)
    mae = build_mae(cfg.model, 16, 3)
    run = RunDir.create(str(tmp_path / "runs"), "mae", "pretrain", "digits", to_dict(cfg))
    save_checkpoint(run.path, 0, mae, {"progress": {}}, to_dict(cfg))
    return run.path, mae


@pytest.mark.parametrize("fmt", ["timm", "hf", "mae"])
def test_export_import_is_the_identity(tmp_path, fmt):
    run, mae = _mae_run(tmp_path)
    out = export_run(run, fmt, tmp_path / {"timm": "e.safetensors", "hf": "hf",
                                           "mae": "e.pth"}[fmt])
    back, first = read_source(out), read_source(run)
    _same_keys_and_values(back.encoder, first.encoder)
    if fmt != "timm":  # timm keeps the encoder only
        _same_keys_and_values(back.decoder, first.decoder)
    assert back.format == {"timm": "timm", "hf": "hf", "mae": "mae"}[fmt]


def test_exported_hf_mae_matches_vitmae(tmp_path):
    from transformers import ViTMAEForPreTraining

    run, mae = _mae_run(tmp_path)
    hf = ViTMAEForPreTraining.from_pretrained(export_run(run, "hf", tmp_path / "hf")).eval()
    x, noise = torch.randn(2, 3, 16, 16), torch.rand(2, 16)
    with torch.no_grad():
        loss, pred, _ = mae.eval()(x, noise=noise)
        out = hf(pixel_values=x, noise=noise)
    torch.testing.assert_close(pred, out.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(loss, out.loss, atol=1e-5, rtol=0)


def test_official_mae_full_into_mae_pretraining(tmp_path):
    run, mae = _mae_run(tmp_path)
    pth = export_run(run, "mae", tmp_path / "mae_pretrain_full.pth")
    assert set(torch.load(pth, weights_only=True)) == {"model"}
    cfg = Config(model=ModelConfig(arch="from_weights"))
    cfg.data.img_size, cfg.pretrain.init = 16, str(pth)
    src = adopt(cfg, str(pth), **quiet)
    assert src.format == "mae" and cfg.model.pos_embed == "sincos"
    again = build_mae(cfg.model, 16, 3)
    load_into(again.encoder, src, **quiet)
    assert load_decoder(again, src, **quiet)
    _same_keys_and_values(again.state_dict(), mae.state_dict())


def test_patch_and_channel_adaptation(tmp_path):
    """ViT/8 RGB weights into a ViT/16 grey model: FlexiViT resize, channel sum, 2x2 grid."""
    from vitmae.weights.adapt import adapt_channels, resize_matrix, resize_patch_weight

    w = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    up = resize_patch_weight(w, 16)  # upsampling: the tokens are kept exactly
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    big = (resize_matrix(8, 16) @ x.reshape(15, 64).T).T.reshape(5, 3, 16, 16)
    torch.testing.assert_close(torch.einsum("bchw,dchw->bd", big, up),
                               torch.einsum("bchw,dchw->bd", x, w))
    grey = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(torch.einsum("bchw,dchw->bd", grey, adapt_channels(w, 1)),
                               torch.einsum("bchw,dchw->bd", grey.expand(-1, 3, -1, -1), w))
    save_file(timm_vit().state_dict(), str(tmp_path / "w.safetensors"))
    lines = []
    cfg = Config(model=ModelConfig(arch="from_weights", patch_size=16, num_heads=2))
    cfg.data.img_size, cfg.finetune.pretrained = 32, str(tmp_path / "w.safetensors")
    src = adopt(cfg, cfg.finetune.pretrained, **quiet)
    vit = build_vit(cfg.model, 32, 1, num_classes=3)
    assert load_into(vit, src, log=lines.append) == {"head.weight", "head.bias"}
    assert any("resampling the 8x8 patch projection to 16x16" in s for s in lines)
    assert any("3-channel weights for 1-channel data" in s for s in lines)
    assert any("4x4 position grid" in s and "2x2" in s for s in lines)


def test_named_preset_that_differs_lists_each_difference(tmp_path):
    save_file(timm_vit(qkv_bias=False).state_dict(), str(tmp_path / "w.safetensors"))
    cfg = Config(model=ModelConfig(arch="vit_micro_patch4"))
    cfg.data.img_size = 32
    with pytest.raises(ConfigError) as e:
        adopt(cfg, str(tmp_path / "w.safetensors"), **quiet)
    text = str(e.value)
    assert "w.safetensors" in text
    assert "model.embed_dim" not in text  # both 32
    assert "model.qkv_bias: the preset has True, the weights False" in text


# seeds whose 300 random bytes make torch's unpickler fail each way it does on garbage:
# UnpicklingError, IndexError, KeyError, UnicodeDecodeError
RANDOM_BYTES = [f"random_bytes_{seed}" for seed in (0, 2, 20, 195)]


@pytest.mark.parametrize("case", [*RANDOM_BYTES, "other_keys", "truncated", "code_pickle",
                                  "hf_without_weights"])
def test_bad_files_are_named(tmp_path, case):
    path = tmp_path / "bad.pth"
    if case.startswith("random_bytes"):
        path.write_bytes(random.Random(int(case.split("_")[-1])).randbytes(300))
    elif case == "other_keys":
        path = tmp_path / "bad.safetensors"
        save_file({"conv1.weight": torch.zeros(2, 3, 3, 3)}, str(path))
    elif case == "truncated":
        path = tmp_path / "bad.safetensors"
        save_file(timm_vit().state_dict(), str(path))
        path.write_bytes(path.read_bytes()[:500])
    elif case == "code_pickle":
        torch.save({"model": Path("x")}, path)  # needs a class to unpickle
    else:
        path = tmp_path / "hf"
        path.mkdir()
        (path / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(CheckpointError) as e:
        read_source(path)
    assert str(path) in str(e.value)
    if case == "other_keys":
        assert "not a ViT checkpoint in any supported format" in str(e.value)
        assert "conv1.weight" in str(e.value)
    if case == "hf_without_weights":
        assert "model.safetensors or pytorch_model.bin" in str(e.value)


TINY = "pretrained/vit_tiny_patch16_224.augreg_in21k_ft_in1k.safetensors"


def test_real_vit_tiny_gives_timms_imagenet_logits():
    root = os.environ.get("VITMAE_DATA")
    if not root or not (Path(root) / TINY).is_file():
        pytest.skip(f"VITMAE_DATA not set or no {TINY} under it")
    path = Path(root) / TINY
    vit, cfg, src = from_file(path, img_size=224, num_classes=1000, num_heads=None)  # guessed: 3
    assert (cfg.data.mean, cfg.model.global_pool) == ([0.5] * 3, "token")
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False).eval()
    ref.load_state_dict(load_file(str(path)), strict=True)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(vit(x), ref(x), atol=1e-4, rtol=1e-5)

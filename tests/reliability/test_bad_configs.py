"""A bad config fails before any compute, naming the key; a checkpoint of another
architecture lists the mismatched keys and shapes; another image size resamples the position
embedding and says so."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file, save_file

from vitmae.cli import main
from vitmae.config import ConfigError, ModelConfig, load_config
from vitmae.models.mae import build_mae
from vitmae.models.vit import build_vit
from vitmae.weights.encoder import load_encoder

MICRO = ("model.arch=vit_micro_patch4", "model.decoder_embed_dim=32",
         "model.decoder_num_heads=2")

TABLE = [  # (override, the key the error must name)
    ("model.mask_ratoi=0.5", "model.mask_ratoi"),  # unknown key
    ("data.batchsize=8", "data.batchsize"),
    ("data.batch_size=eight", "data.batch_size"),  # wrong types
    ("data.skip_bad=3", "data.skip_bad"),
    ("model.mask_ratio=1.0", "model.mask_ratio"),  # outside [0, 1)
    ("model.mask_ratio=-0.1", "model.mask_ratio"),
    ("model.mask_ratio=.nan", "model.mask_ratio"),
    ("data.img_size=18", "data.img_size"),  # not divisible by the patch (4)
    ("data.img_size=0", "data.img_size"),
    ("model.num_heads=3", "model.num_heads"),  # 3 heads do not divide width 32
    ("model.decoder_num_heads=0", "model.decoder_num_heads"),
    ("model.patch_size=0", "model.patch_size"),
    ("model.embed_dim=6", "model.embed_dim"),  # sin-cos needs a multiple of 4
    ("data.batch_size=0", "data.batch_size"),
    ("finetune.pretrained=/no/such/checkpoint.pth", "finetune.pretrained"),
    ('finetune.pretrained="nul\\0byte"', "finetune.pretrained"),
    ("pretrain.optim.betas=[0.9, 1.5]", "pretrain.optim.betas"),
    ("run.eval_interval=0", "run.eval_interval"),
    ("run.threads=0", "run.threads"),
    ("run.keep_last=0", "run.keep_last"),
    ("data.volume.spacing=[1.0, 0.0, 1.0]", "data.volume.spacing"),
    ("data.volume.spacing=[1.0, 1.0]", "data.volume.spacing"),
    ("data.volume.intensity_range=[250, -175]", "data.volume.intensity_range"),
    ("data.volume.foreground_crop=1.5", "data.volume.foreground_crop"),
    ("data.volume.overlap=1.0", "data.volume.overlap"),
]


def test_3d_segmentation_has_the_linear_head_only():
    cfg = load_config("volume_seg_folder", [])  # the preset itself is valid
    assert (cfg.task, cfg.model.spatial_dims, cfg.model.seg_head) == ("segment", 3, "linear")
    with pytest.raises(ConfigError, match=r"model\.seg_head: the 3-D segmenter"):
        load_config("volume_seg_folder", ["model.seg_head=pup"])


@pytest.mark.parametrize("override, key", TABLE)
def test_bad_value_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("digits", [*MICRO, override])


def test_cli_fails_before_any_compute(tmp_path, capsys):
    code = main(["pretrain", "-c", "digits", *MICRO, "data.img_size=18",
                 f"run.output_dir={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert code == 2 and "data.img_size: 18x18 is not divisible by the patch size 4" in err
    assert not (tmp_path / "runs").exists()  # no run folder, no data loaded, no model built


def _mae_checkpoint(path, img_size=16, **model):
    cfg = ModelConfig(arch="vit_micro_patch4", decoder_embed_dim=32, decoder_num_heads=2,
                      **model)
    save_file(build_mae(cfg, img_size, 1).state_dict(), str(path))
    return path


def test_architecture_mismatch_lists_keys_and_shapes(tmp_path, capsys):
    ckpt = _mae_checkpoint(tmp_path / "mae.safetensors")
    code = main(["finetune", "-c", "digits", *MICRO, "model.embed_dim=64",
                 f"finetune.pretrained={ckpt}", f"run.output_dir={tmp_path}", "run.name=ft"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{ckpt}: the weights do not fit the preset's model" in err
    assert "model.embed_dim: the preset has 64, the weights 32" in err
    assert not (tmp_path / "ft").exists()  # refused before a run folder or model exists


def test_other_image_size_resamples_the_position_embedding(tmp_path):
    ckpt = _mae_checkpoint(tmp_path / "mae.safetensors", img_size=16)
    encoder = build_vit(ModelConfig(arch="vit_micro_patch4"), 32, 1, num_classes=10)
    lines = []
    missing = load_encoder(encoder, load_file(str(ckpt)), log=lines.append)
    assert missing == {"head.weight", "head.bias"}
    assert lines == ["pos_embed: resampling the 4x4 position grid of the checkpoint to 8x8"]

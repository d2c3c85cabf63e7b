"""Config: unknown keys and wrong types name the key, values are validated, presets load."""

from __future__ import annotations

import pytest
import yaml

from vitmae.cli import main
from vitmae.config import (
    PRESET_DIR,
    Config,
    ConfigError,
    config_from_dict,
    load_config,
    parse_override,
    to_dict,
    validate,
)

PRESETS = sorted(PRESET_DIR.glob("*.yaml"))


def test_defaults_validate():
    assert load_config() == Config()


def test_unknown_key_in_a_preset_is_named(tmp_path):
    preset = tmp_path / "bad.yaml"
    preset.write_text("# a typo\nmodel:\n  arch: vit_micro_patch4\n  mask_ratoi: 0.5\n")
    with pytest.raises(ConfigError, match=r"model\.mask_ratoi") as e:
        load_config(str(preset))
    assert "bad.yaml" in str(e.value)


@pytest.mark.parametrize("override, key", [
    ("data.batchsize=8", "data.batchsize"),
    ("optim.lr=0.1", "optim"),
    ("finetune.layer_decay.x=1", "finetune.layer_decay"),
])
def test_unknown_key_in_an_override_is_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("digits", [override])


@pytest.mark.parametrize("override, key", [
    ("data.batch_size=abc", "data.batch_size"),
    ("model.mask_ratio=[1]", "model.mask_ratio"),
    ("data.batch_size=true", "data.batch_size"),  # a bool is not an int
    ("data.download=1", "data.download"),  # an int is not a bool
    ("run.seed=1.5", "run.seed"),
    ("pretrain.betas=[0.9]", "pretrain.betas"),
    ("model=3", "model"),
])
def test_wrong_type_is_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize("override, message", [
    ("task=detect", "task: expected one of 'classify', 'segment', 'multilabel', got 'detect'"),
    ("model.global_pool=max", "model.global_pool: expected one of 'avg', 'token', got 'max'"),
    ("model.cnn_stem=tiny", "model.cnn_stem: expected one of 'imagenet', 'cifar', got 'tiny'"),
    ("model.seg_head=fcn", "model.seg_head: expected one of 'linear', 'pup', 'unet', got 'fcn'"),
    ("model.stem=1", "model.stem: expected one of 'patch', 'conv', got 1"),  # not the string
    ("finetune.schedule=step",
     "finetune.schedule: expected one of 'cosine', 'constant', got 'step'"),
    ("run.amp=fp16", "run.amp: expected one of 'auto', 'bf16', 'fp32', got 'fp16'"),
])
def test_a_literal_override_names_the_key_and_the_choices(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == message


def test_a_literal_in_a_preset_names_the_key_and_the_choices(tmp_path):
    preset = tmp_path / "tpu.yaml"
    preset.write_text("# a device that is not one\nrun:\n  device: tpu\n")
    with pytest.raises(ConfigError, match=r"tpu\.yaml: run\.device: expected one of 'auto', "
                       r"'cpu', 'cuda', got 'tpu'"):
        load_config(str(preset))


def test_validate_checks_literals_set_in_python():
    cfg = Config()
    cfg.model.pos_embed = "rope"  # as a weights file's metadata could
    with pytest.raises(ConfigError, match=r"model\.pos_embed: expected one of 'sincos', "):
        validate(cfg)


def test_numbers_are_read_as_yaml():
    cfg = load_config(None, ["pretrain.warmup_epochs=2", "pretrain.blr=1e-3",
                             "finetune.min_lr=2.5e-7", "data.subset=null",
                             "pretrain.betas=[0.9, 0.95]"])
    assert cfg.pretrain.warmup_epochs == 2.0 and isinstance(cfg.pretrain.warmup_epochs, float)
    assert cfg.pretrain.blr == 1e-3 and cfg.finetune.min_lr == 2.5e-7
    assert cfg.data.subset is None and cfg.pretrain.betas == (0.9, 0.95)


@pytest.mark.parametrize("override", ["no_equals_sign", "=3"])
def test_malformed_override(override):
    with pytest.raises(ConfigError, match="override"):
        parse_override(override)


@pytest.mark.parametrize("overrides, key", [
    (["model.mask_ratio=1.0"], "model.mask_ratio"),
    (["model.mask_ratio=-0.1"], "model.mask_ratio"),
    (["data.img_size=18"], "data.img_size"),  # patch 4
    (["model.num_heads=3"], "model.num_heads"),  # width 32
    (["data.batch_size=0"], "data.batch_size"),
    (["finetune.pretrained=no/such/run"], "finetune.pretrained"),
    (["model.arch=vit_nano"], "model.arch"),
    (["task=detect"], "task"),
    (["pretrain.accum_iter=0"], "pretrain.accum_iter"),
    (["finetune.layer_decay=0"], "finetune.layer_decay"),
    (["finetune.head_lr_mult=0"], "finetune.head_lr_mult"),
    (["model.rope=true", "model.embed_dim=24", "model.num_heads=4"], "model.rope"),  # width 6
    (["model.seg_aux=-0.4"], "model.seg_aux"),
    (["run.shards=0"], "run.shards"),
    (["run.shards=2", "run.device=cuda"], "run.shards"),
    (["run.shards=4", "data.batch_size=3"], "run.shards"),
])
def test_bad_values_are_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, ["model.arch=vit_micro_patch4", *overrides])


def test_an_existing_pretrained_path_validates(tmp_path):
    assert load_config(None, [f"finetune.pretrained={tmp_path}"]).finetune.pretrained == str(
        tmp_path)


def test_unknown_preset_lists_the_built_in_ones():
    with pytest.raises(ConfigError, match="digits"):
        load_config("no_such_preset")


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_built_in_preset_loads_and_validates(preset):
    cfg = load_config(preset.stem)
    assert cfg == load_config(str(preset))
    assert preset.read_text().startswith("# "), "a preset's first line says what it is for"
    assert config_from_dict(to_dict(cfg)) == cfg


def test_config_command_prints_yaml_that_loads_back(capsys):
    assert main(["config", "-c", "digits", "finetune.blr=2e-3"]) == 0
    printed = capsys.readouterr().out
    assert config_from_dict(yaml.safe_load(printed)) == load_config("digits", ["finetune.blr=2e-3"])


def test_cli_reports_a_config_error_and_exits_2(capsys):
    assert main(["config", "-c", "digits", "data.batch_size=abc"]) == 2
    assert "data.batch_size" in capsys.readouterr().err


def test_a_moved_key_names_its_new_place():
    with pytest.raises(ConfigError, match=r"unknown key 'data\.seg_digits' \(moved to "
                       r"data\.mnist_seg\.digits\)"):
        load_config("mnist_seg", ["data.seg_digits=2"])

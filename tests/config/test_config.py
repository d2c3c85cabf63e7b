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
    ("finetune.optim.layer_decay.x=1", "finetune.optim.layer_decay"),
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
    ("pretrain.optim.betas=[0.9]", "pretrain.optim.betas"),
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
    ("finetune.optim.schedule=step",
     "finetune.optim.schedule: expected one of 'cosine', 'constant', got 'step'"),
    ("run.amp=fp16", "run.amp: expected one of 'auto', 'bf16', 'fp32', got 'fp16'"),
])
def test_a_literal_override_names_the_key_and_the_choices(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == message


@pytest.mark.parametrize("name, text, message", [
    # a Literal field: the key and the choices
    ("tpu.yaml", "# a device that is not one\nrun:\n  device: tpu\n",
     r"tpu\.yaml: run\.device: expected one of 'auto', 'cpu', 'cuda', got 'tpu'"),
    # a key of the old flat layout: its new place
    ("flat.yaml", "# the flat layout\nfinetune:\n  pretrained: null\n  warmup_epochs: 2\n",
     r"flat\.yaml: unknown key 'finetune\.warmup_epochs' "
     r"\(moved to finetune\.optim\.warmup_epochs\)"),
])
def test_a_bad_preset_names_the_file_the_key_and_what_was_expected(tmp_path, name, text,
                                                                   message):
    preset = tmp_path / name
    preset.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(str(preset))


def test_validate_checks_literals_set_in_python():
    cfg = Config()
    cfg.model.pos_embed = "rope"  # as a weights file's metadata could
    with pytest.raises(ConfigError, match=r"model\.pos_embed: expected one of 'sincos', "):
        validate(cfg)


def test_numbers_are_read_as_yaml():
    cfg = load_config(None, ["pretrain.optim.warmup_epochs=2", "pretrain.optim.blr=1e-3",
                             "finetune.optim.min_lr=2.5e-7", "data.subset=null",
                             "pretrain.optim.betas=[0.9, 0.95]"])
    pre = cfg.pretrain.optim
    assert pre.warmup_epochs == 2.0 and isinstance(pre.warmup_epochs, float)
    assert pre.blr == 1e-3 and cfg.finetune.optim.min_lr == 2.5e-7
    assert cfg.data.subset is None and pre.betas == (0.9, 0.95)


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
    (["pretrain.optim.accum_iter=0"], "pretrain.optim.accum_iter"),
    (["finetune.optim.layer_decay=0"], "finetune.optim.layer_decay"),
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
    override = "finetune.optim.blr=2e-3"
    assert main(["config", "-c", "digits", override]) == 0
    printed = capsys.readouterr().out
    assert config_from_dict(yaml.safe_load(printed)) == load_config("digits", [override])


def test_cli_reports_a_config_error_and_exits_2(capsys):
    assert main(["config", "-c", "digits", "data.batch_size=abc"]) == 2
    assert "data.batch_size" in capsys.readouterr().err


@pytest.mark.parametrize("override, new", [
    ("finetune.epochs=3", "finetune.optim.epochs"),
    ("pretrain.blr=1e-3", "pretrain.optim.blr"),
    ("finetune.layer_decay=0.75", "finetune.optim.layer_decay"),
    ("data.seg_digits=2", "data.mnist_seg.digits"),
])
def test_a_moved_key_in_an_override_names_its_new_place(override, new):
    old = override.split("=")[0]
    with pytest.raises(ConfigError) as e:
        load_config("mnist_seg", [override])
    assert str(e.value) == f"unknown key '{old}' (moved to {new})"


# a run folder's config.yaml as the flat layout wrote it (abridged): the optimiser's fields
# beside each stage's own, label_smoothing in both, the MNIST segmentation options in data
FLAT_RUN_CONFIG = """
task: segment
data: {dataset: mnist_seg, img_size: 64, batch_size: 16, seg_digits: 2, seg_threshold: 100}
model: {arch: vit_mini_patch8, seg_head: pup}
pretrain: {epochs: 2, optimizer: adamw, blr: 0.0015, betas: [0.9, 0.95], label_smoothing: 0.0,
           schedule: cosine, init: null, knn_every: 0, recon_every: 1}
finetune: {epochs: 5, blr: 0.01, warmup_epochs: 0.3, layer_decay: 0.85, label_smoothing: 0.1,
           clip_grad: null, pretrained: null, linear_probe: false, head_lr_mult: 10.0}
"""


def test_a_run_folder_config_in_the_flat_layout_is_rebuilt():
    cfg = config_from_dict(yaml.safe_load(FLAT_RUN_CONFIG))
    pre, fin = cfg.pretrain, cfg.finetune
    assert (pre.optim.epochs, pre.optim.blr, pre.optim.betas) == (2, 0.0015, (0.9, 0.95))
    assert (fin.optim.epochs, fin.optim.blr, fin.optim.warmup_epochs) == (5, 0.01, 0.3)
    assert (fin.optim.layer_decay, fin.label_smoothing, fin.head_lr_mult) == (0.85, 0.1, 10.0)
    assert (cfg.data.mnist_seg.digits, cfg.data.mnist_seg.threshold) == (2, 100)
    assert (cfg.task, cfg.data.img_size, cfg.model.seg_head) == ("segment", 64, "pup")


def _flat(data: dict) -> dict:
    """`to_dict` output in the flat layout (what runs wrote before the optim sections)."""
    for stage in ("pretrain", "finetune"):
        data[stage] = {**data[stage].pop("optim"), **data[stage]}
    data["pretrain"]["label_smoothing"] = 0.0
    seg = data["data"].pop("mnist_seg")
    data["data"].update(seg_digits=seg["digits"], seg_threshold=seg["threshold"])
    return data


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_comes_back_from_the_flat_layout(preset):
    cfg = load_config(preset.stem)
    assert config_from_dict(_flat(to_dict(cfg))) == cfg


def test_a_key_in_both_layouts_is_refused():
    data = to_dict(Config())
    data["finetune"]["epochs"] = 3  # beside finetune.optim.epochs
    with pytest.raises(ConfigError, match=r"'finetune\.epochs' \(moved to finetune\.optim"):
        config_from_dict(data)

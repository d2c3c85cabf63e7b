"""Loading the run configuration (`vitmae.config.schema`): YAML presets and `key.sub=value`
overrides.

`load_config` resolves a preset (a path, or the name of a built-in preset in
`vitmae/config/presets/`), applies overrides, checks every key and type, and validates the values
(`vitmae.config.checks`) before any compute starts. `config_from_dict` rebuilds a run folder's
config, also one written with the keys of an earlier layout (`MOVED`).
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from vitmae.config.checks import validate
from vitmae.config.schema import Config, OptimConfig
from vitmae.config.typecheck import check_value
from vitmae.errors import ConfigError

__all__ = ["MOVED", "PRESET_DIR", "apply_overrides", "config_from_dict", "load_config",
           "parse_override", "resolve_preset", "to_dict", "upgrade_layout"]

PRESET_DIR = Path(__file__).parent / "presets"

# Keys of earlier layouts -> where they are now: the unknown-key error names the new place, and
# config_from_dict moves them when it reads an older run folder's config.yaml (a preset or an
# override gets the error, not the move)
MOVED = {**{f"{stage}.{f.name}": f"{stage}.optim.{f.name}" for stage in ("pretrain", "finetune")
            for f in dataclasses.fields(OptimConfig)},
         "data.seg_digits": "data.mnist_seg.digits",
         "data.seg_threshold": "data.mnist_seg.threshold"}


def to_dict(cfg: Any) -> dict:
    """The config as plain YAML-safe data (tuples become lists)."""
    out = dataclasses.asdict(cfg)

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return plain(out)


def _apply(obj: Any, data: dict, prefix: str = "") -> None:
    """Set the fields of dataclass `obj` from nested dict `data`, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            hint = f"moved to {MOVED[full]}" if full in MOVED else \
                f"valid keys here: {', '.join(sorted(names))}"
            raise ConfigError(f"unknown key '{full}' ({hint})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, f"{full}.")
        else:
            setattr(obj, key, check_value(value, hints[key], full))


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=1e-4' -> (['optim', 'lr'], 0.0001); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key.sub=value")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override '{text}': value is not valid YAML ({e})") from None
    return key.strip().split("."), value


def resolve_preset(preset: str) -> Path:
    """A preset path, or the name of a built-in preset ('digits' -> presets/digits.yaml)."""
    path = Path(preset)
    if path.is_file():
        return path
    builtin = PRESET_DIR / (preset if preset.endswith(".yaml") else f"{preset}.yaml")
    if builtin.is_file():
        return builtin
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    raise ConfigError(f"preset '{preset}' not found: no such file, and no built-in preset of "
                      f"that name (built-in: {', '.join(names)})")


def load_config(preset: str | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Defaults <- preset YAML <- overrides, then `validate`."""
    cfg = Config()
    if preset:
        path = resolve_preset(preset)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        try:
            _apply(cfg, data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def apply_overrides(cfg: Config, overrides: list[str] | tuple) -> Config:
    """Apply `key.sub=value` strings to `cfg` in place (no validation)."""
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _apply(cfg, nested)
    return cfg


def config_from_dict(data: dict) -> Config:
    """Rebuild a Config from `to_dict` output (a run folder's config.yaml), also from that of
    an earlier layout (the keys of MOVED)."""
    cfg = Config()
    _apply(cfg, upgrade_layout(data))
    return cfg


def upgrade_layout(data: Any) -> Any:
    """A copy of config dict `data` with each key of MOVED at its new place, unless that
    place is taken (then the unknown-key error names the old key)."""
    if not isinstance(data, dict):
        return data  # _apply names what is wrong
    data = copy.deepcopy(data)
    if isinstance(data.get("pretrain"), dict):  # the flat layout's, inherited, never read
        data["pretrain"].pop("label_smoothing", None)
    for old, new in MOVED.items():
        *where, name = old.split(".")
        parent = _mapping(data, where)
        if parent is None or name not in parent:
            continue
        *where, new_name = new.split(".")
        target = _mapping(data, where, create=True)
        if target is not None and new_name not in target:
            target[new_name] = parent.pop(name)
    return data


def _mapping(data: dict, keys: list[str], create: bool = False) -> dict | None:
    """data[k0][k1]... when that is a mapping, else None; create: add missing levels."""
    for key in keys:
        if create and key not in data:
            data[key] = {}
        data = data.get(key)
        if not isinstance(data, dict):
            return None
    return data

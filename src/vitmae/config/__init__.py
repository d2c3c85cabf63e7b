"""The run configuration: typed dataclasses (`schema`), their value checks (`checks`), loading
YAML presets (`presets/`) with `key.sub=value` overrides (`load`).

Everything a caller needs is importable from here: `from vitmae.config import load_config`.
"""

from vitmae.config.checks import need, validate
from vitmae.config.load import (
    MOVED,
    PRESET_DIR,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
    resolve_preset,
    to_dict,
    upgrade_layout,
)
from vitmae.config.schema import (
    Config,
    DataConfig,
    FinetuneConfig,
    MnistSegConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    RunConfig,
)
from vitmae.errors import ConfigError

__all__ = [
    "MOVED", "PRESET_DIR", "Config", "ConfigError", "DataConfig", "FinetuneConfig",
    "MnistSegConfig", "ModelConfig", "OptimConfig", "PretrainConfig", "RunConfig",
    "apply_overrides", "config_from_dict", "load_config", "need", "parse_override",
    "resolve_preset", "to_dict", "upgrade_layout", "validate",
]

"""Config values against their fields' annotations: types, a Literal's choices, lists and
tuples, optional values; int is accepted where float is expected. Every error names its key
(`vitmae.errors.ConfigError`). The loader checks each override as it is read
(`check_value`); `check_types` checks a whole Config, also the values set in Python.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from vitmae.errors import ConfigError


def check_value(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; int is accepted where float is expected."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if any(type(value) is type(c) and value == c for c in typing.get_args(tp)):
            return value
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_value(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [check_value(v, arg, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(check_value(v, a, f"{key}[{i}]") for i, (v, a) in pairs)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads '1e-4' (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def check_types(obj: Any, prefix: str = "") -> None:
    """Every value against its annotation (a Literal's choices too), as the loader checks them:
    also those set in Python, e.g. from a weights file."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            check_types(value, f"{prefix}{f.name}.")
        else:
            check_value(value, hints[f.name], f"{prefix}{f.name}")

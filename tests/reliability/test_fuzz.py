"""Property-based tests. The config parser and overrides raise only ConfigError
on any input; patchify / random_masking hold for random shapes; decoding mutated PNG and JPEG
(and BMP) files gives an RGB image or BadImageError, nothing else."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vitmae.config import Config, ConfigError, load_config
from vitmae.data.checks import BadImageError, open_image
from vitmae.models.mae import patchify, random_masking, unpatchify

FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _keys(obj, prefix=""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _keys(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


KEYS = sorted(_keys(Config()))
names = st.text("abcdefghijklmnopqrstuvwxyz_.", min_size=0, max_size=12)
key = st.one_of(st.sampled_from(KEYS), names, st.sampled_from(KEYS).map(lambda k: k + ".x"),
                st.sampled_from(["model", "data", "run", "pretrain"]))
scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                   st.floats(allow_nan=True), st.text(max_size=12))
value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6)
raw_value = st.one_of(value.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
                      st.text(max_size=20))


def _only_config_errors(fn) -> None:
    try:
        fn()
    except ConfigError:
        pass


# Most pairs name a real key with a boundary-ish value (0, -1, nan, a wrong type), where
# validation code divides, compares or touches the file system.
edgy = st.one_of(st.integers(-2, 6).map(str),
                 st.sampled_from([".nan", "-.inf", "1e30", "null", "[]", "{}", "''", '"\\0"',
                                  "[0.9]", "[1, 2]", "true", "x"]))
pair = st.one_of(st.tuples(st.sampled_from(KEYS), edgy), st.tuples(key, raw_value))


@settings(FUZZ, max_examples=60)
@given(st.lists(pair, min_size=1, max_size=4))
def test_overrides_raise_only_config_errors(pairs):
    _only_config_errors(lambda: load_config("digits", [f"{k}={v}" for k, v in pairs]))


@FUZZ
@given(st.lists(st.text(max_size=30), max_size=3))
def test_raw_override_strings_raise_only_config_errors(texts):
    _only_config_errors(lambda: load_config(None, texts))


@FUZZ
@given(st.dictionaries(key, value, max_size=5))
def test_presets_raise_only_config_errors(tmp_path, tree):
    nested: dict = {}
    for k, v in tree.items():  # 'a.b' -> {'a': {'b': v}}; a clash keeps the scalar
        *parents, last = k.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
        node[last] = v
    preset = tmp_path / "fuzz.yaml"
    preset.write_text(yaml.safe_dump(nested))
    _only_config_errors(lambda: load_config(str(preset)))


@FUZZ
@given(B=st.integers(1, 3), C=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5),
       p=st.integers(1, 5))
def test_patchify_round_trip(B, C, h, w, p):
    imgs = torch.randn(B, C, h * p, w * p)
    x = patchify(imgs, p)
    assert x.shape == (B, h * w, p * p * C)
    assert torch.equal(unpatchify(x, p, C, (h, w)), imgs)
    assert torch.equal(x[:, 0], imgs[:, :, :p, :p].permute(0, 2, 3, 1).reshape(B, -1))


@FUZZ
@given(B=st.integers(1, 4), L=st.integers(1, 64), ratio=st.floats(0.0, 0.999),
       seed=st.integers(0, 2**31))
def test_random_masking_counts(B, L, ratio, seed):
    g = torch.Generator().manual_seed(seed)
    ids_keep, mask, ids_restore = random_masking(B, L, ratio, generator=g)
    L_keep = int(L * (1 - ratio))
    assert ids_keep.shape == (B, L_keep) and mask.shape == ids_restore.shape == (B, L)
    assert torch.equal(mask.sum(1), torch.full((B,), float(L - L_keep)))
    assert torch.equal(ids_restore.sort(1).values, torch.arange(L).expand(B, L))
    kept = torch.zeros(B, L).scatter_(1, ids_keep, 1.0)
    assert torch.equal(kept, 1 - mask)  # the kept ids are exactly the 0s of the mask


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


SEEDS = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "BMP")}


@pytest.mark.parametrize("fmt", SEEDS)
@FUZZ
@given(data=st.data())
def test_mutated_images_decode_or_raise_bad_image_error(tmp_path, fmt, data):
    raw = bytearray(SEEDS[fmt])
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[: data.draw(st.integers(1, len(raw)))]
    path = tmp_path / f"mutant.{fmt.lower()}"
    path.write_bytes(bytes(raw))
    try:
        im = open_image(path)
    except BadImageError as e:
        assert str(path) in str(e)
    else:
        assert im.mode == "RGB" and min(im.size) >= 1

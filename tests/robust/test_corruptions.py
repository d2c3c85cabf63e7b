"""The 15 corruptions: every setting keeps the shape and the range and is seeded; severity moves
the image further from the clean one; grey and uint8 inputs; errors; and checks against
independent definitions (noise statistics, colorsys's HSV, Pillow's BOX resize, the geometry
of the motion-blur line)."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vitmae.errors import ConfigError
from vitmae.robust.corruption_blur import motion_blur_image
from vitmae.robust.corruption_tables import CIFAR10_C, IMAGENET_C, params_for
from vitmae.robust.corruptions import (
    CORRUPTIONS,
    GROUPS,
    RANDOM_CORRUPTIONS,
    SEVERITIES,
    corrupt,
)


def scene(height: int, width: int | None = None) -> torch.Tensor:
    """A fixed natural-looking uint8 image (1, 3, H, W): a sky gradient, an orange disc, a
    striped green box, and 1/f texture as natural images have."""
    width = width or height
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    img = np.stack([0.3 + 0.4 * y, 0.5 + 0.3 * y, 0.8 - 0.3 * y])  # (3, H, W)
    img[:, (x - 0.35) ** 2 + (y - 0.4) ** 2 < 0.04] = np.array([[0.85], [0.55], [0.1]])
    box = (x > 0.55) & (x < 0.9) & (y > 0.55) & (y < 0.95)
    img[:, box] = np.array([[0.15], [0.35], [0.15]]) * (1 + 0.5 * np.sin(30 * x[box]))
    rng = np.random.default_rng(0)
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
    amplitude = 1 / np.maximum(np.hypot(fy, fx), 1 / max(height, width))  # 1/f spectrum
    texture = np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((height, width)))).real
    img = np.clip(img + 0.06 * texture / texture.std(), 0, 1)
    return torch.from_numpy(np.rint(img * 255).astype(np.uint8))[None]


def test_the_fifteen_in_the_papers_four_groups():
    assert len(CORRUPTIONS) == len(set(CORRUPTIONS)) == 15
    assert SEVERITIES == (1, 2, 3, 4, 5)
    assert [len(g) for g in GROUPS.values()] == [3, 4, 4, 4]
    assert list(GROUPS) == ["noise", "blur", "weather", "digital"]
    for table in (CIFAR10_C, IMAGENET_C):
        assert set(table) == set(CORRUPTIONS)
        assert all(len(row) == len(SEVERITIES) for row in table.values())
    assert params_for(32) is params_for(64) is CIFAR10_C
    assert params_for(65) is params_for(224) is IMAGENET_C


# (B, C, H, W): a CIFAR-sized batch and a non-square one that takes ImageNet-C's table
BATCHES = {"cifar": torch.cat([scene(32), scene(32).flip(-1)]), "imagenet": scene(72, 80)}


@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("table", list(BATCHES))
def test_every_setting_keeps_shape_and_range_and_is_seeded(name, table):
    images = BATCHES[table]
    clean = images.float() / 255
    for severity in SEVERITIES:
        out = corrupt(images, name, severity, seed=3)
        assert out.shape == images.shape and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 1
        assert (out - clean).abs().mean() > 1e-3, (name, severity)  # it does something
        assert torch.equal(out, corrupt(images, name, severity, seed=3))
        again = corrupt(images, name, severity, seed=4)
        assert torch.equal(out, again) != (name in RANDOM_CORRUPTIONS), (name, severity)


# Adjacent published severities that can tie or cross in mean absolute difference, where
# severity 5 still moves the image further than severity 1:
CROSSING = {
    "glass_blur": "more blur of the same shuffle smooths its jaggies (CIFAR 4 -> 5); "
    "ImageNet 3 -> 4 trades a shuffle iteration for a longer reach",
    "snow": "severities 2 and 3 trade the number of flakes for their size",
    "frost": "from severity 3 on the image weight falls as fast as the frost weight rises, "
    "which on a bright image keeps the sum near the clean image",
    "fog": "ImageNet severities 3 and 4 have the same thickness and differ in roughness only",
    "pixelate": "ImageNet 5 shrinks 96 px by exactly 4, so its blocks align with the pixels",
}
# The published elastic tables shrink the random affine warp as the local displacement grows:
# the reference's own output is further from the clean image at severity 1 than at 5.
NOT_MONOTONE = {"elastic_transform"}


@pytest.mark.parametrize("size", [32, 96])
def test_severity_moves_the_image_further_from_the_clean_one(size):
    images = scene(size)
    clean = images.float() / 255
    for name in CORRUPTIONS:
        mad = np.array(
            [float((corrupt(images, name, s, seed=0) - clean).abs().mean()) for s in SEVERITIES]
        )
        if name in CROSSING:
            assert mad[-1] > mad[0], (name, mad.round(4))
        elif name not in NOT_MONOTONE:
            assert (np.diff(mad) >= -1e-4).all(), (name, mad.round(4))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_uint8_and_float_inputs_agree_bit_for_bit(name):
    images = BATCHES["cifar"]
    assert torch.equal(corrupt(images, name, 3, 0), corrupt(images.float() / 255, name, 3, 0))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_grey_images_are_corrupted_natively(name):
    grey = scene(32)[:, :1]  # (1, 1, H, W)
    out = corrupt(grey, name, 4, seed=1)
    assert out.shape == grey.shape and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    if name in GROUPS["noise"] or name == "frost":
        return  # these draw per channel (noise) or tint the texture (frost)
    # the others draw the same numbers for one channel as for three: a grey image corrupts
    # as its three-channel copy does (up to JPEG's colour conversion)
    rgb = corrupt(grey.expand(-1, 3, -1, -1), name, 4, seed=1)
    atol = 1.5 / 255 if name == "jpeg_compression" else 1e-5
    assert torch.allclose(rgb, out.expand_as(rgb), atol=atol), name


def test_an_image_corrupts_the_same_in_any_batch():
    images = torch.cat([scene(32), scene(32)])  # two copies of one image
    for name in sorted(RANDOM_CORRUPTIONS):
        both = corrupt(images, name, 2, seed=5)
        assert not torch.equal(both[0], both[1]), name  # ids 0 and 1 draw differently
        alone = corrupt(images[1:], name, 2, seed=5, indices=[1])
        assert torch.equal(alone, both[1:]), name


def test_global_random_state_is_left_alone():
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    for name in sorted(RANDOM_CORRUPTIONS):
        corrupt(scene(32), name, 1, seed=0)
    assert (np.random.get_state()[1] == numpy_state).all()
    assert torch.equal(torch.get_rng_state(), torch_state)


@pytest.mark.parametrize("bad", ["gausian_noise", "", "Fog"])
def test_an_unknown_corruption_is_named(bad):
    with pytest.raises(ConfigError, match=rf"'{bad}'.*gaussian_noise.*jpeg_compression"):
        corrupt(scene(32), bad, 1, 0)


@pytest.mark.parametrize("bad", [0, 6, -1, 2.5, "3", True])
def test_a_bad_severity_is_named(bad):
    with pytest.raises(ConfigError, match=rf"severity {bad!r} .*1, 2, 3, 4, 5"):
        corrupt(scene(32), "fog", bad, 0)


@pytest.mark.parametrize("size, severity", [(64, 5), (128, 1)])
def test_gaussian_noise_has_the_published_std(size, severity):
    grey = torch.full((1, 1, size, size), 0.5)  # far from 0 and 1: no clipping
    c = params_for(size)["gaussian_noise"][severity - 1]
    noise = corrupt(grey, "gaussian_noise", severity, seed=0) - 0.5
    assert abs(noise.mean()) < 4 * c / size  # 4 standard errors
    assert noise.std() == pytest.approx(c, rel=0.03)


def test_shot_and_impulse_noise_follow_their_laws():
    x = torch.full((1, 3, 64, 64), 0.5)
    c = CIFAR10_C["shot_noise"][2]  # Poisson(c x) / c: mean x, variance x / c
    shot = corrupt(x, "shot_noise", 3, seed=0)
    assert shot.mean() == pytest.approx(0.5, abs=0.003)
    assert shot.var() == pytest.approx(0.5 / c, rel=0.05)
    c = CIFAR10_C["impulse_noise"][4]  # a fraction c of the values set to 0 or 1, even odds
    impulse = corrupt(x, "impulse_noise", 5, seed=0)
    assert (impulse != 0.5).float().mean() == pytest.approx(c, rel=0.1)
    assert (impulse == 1).sum() == pytest.approx((impulse == 0).sum().item(), rel=0.2)


def test_brightness_is_a_shift_of_hsv_value():
    pixel = (0.2, 0.5, 0.35)
    image = torch.tensor(pixel).reshape(1, 3, 1, 1).expand(1, 3, 8, 8)
    for severity, c in zip(SEVERITIES, CIFAR10_C["brightness"], strict=True):
        h, s, v = colorsys.rgb_to_hsv(*pixel)
        expected = torch.tensor(colorsys.hsv_to_rgb(h, s, min(v + c, 1.0)))
        out = corrupt(image, "brightness", severity, seed=0)[0, :, 0, 0]
        assert torch.allclose(out, expected, atol=1e-6), severity


def test_contrast_scales_each_channels_deviation_from_its_mean():
    image = scene(32).float() / 255
    c = CIFAR10_C["contrast"][0]
    mean = image.mean(dim=(2, 3), keepdim=True)
    expected = (image - mean) * c + mean
    assert torch.allclose(corrupt(image, "contrast", 1, 0), expected, atol=1e-6)


def test_pixelate_is_pillows_box_resize_down_and_up():
    image = scene(40, 56).float() / 255  # (1, 3, H, W), non-square
    c = CIFAR10_C["pixelate"][4]
    small = (int(56 * c), int(40 * c))  # Pillow sizes are (W, H)
    expected = torch.stack(
        [
            torch.from_numpy(
                np.array(
                    Image.fromarray(ch.numpy())
                    .resize(small, Image.Resampling.BOX)
                    .resize((56, 40), Image.Resampling.BOX)
                )
            )
            for ch in image[0]
        ]
    )
    assert torch.allclose(corrupt(image, "pixelate", 5, 0)[0], expected, atol=1e-5)


def test_glass_blur_copies_pixels_from_up_and_left_as_the_reference_does():
    # CIFAR severity 1 blurs with std 0.05 (a one-tap kernel), so only the shuffle shows. Its
    # offsets are in [-1, 1) and the scan runs down-right to up-left: each pixel copies an
    # up-left neighbour not yet visited, values get duplicated (a copy, not a swap: the
    # reference's numpy-view swap) and nothing moves down or right.
    values = torch.randperm(32 * 32 * 3, generator=torch.Generator().manual_seed(0))
    image = (values.float() / values.numel()).reshape(1, 3, 32, 32)  # all values distinct
    out = corrupt(image, "glass_blur", 1, seed=0)[0]
    padded = F.pad(image[0], (1, 0, 1, 0), value=-1.0)  # (3, 33, 33): up-left neighbours
    neighbours = torch.stack([padded[:, 1:, 1:], padded[:, :-1, 1:], padded[:, 1:, :-1],
                              padded[:, :-1, :-1]])  # fmt: skip
    assert (neighbours == out).any(dim=0).all()
    assert len(out[0].unique()) < 32 * 32 - 100  # many duplicated: a copy, not a swap


@pytest.mark.parametrize("angle, step", [(0, (0, -1)), (90, (-1, 0)), (180, (0, 1))])
def test_motion_blur_smears_a_dot_along_its_line(angle, step):
    # out(p) = sum_i w_i in(p + i * direction): a dot lands on the ray going the other way
    dot = np.zeros((1, 41, 41), dtype=np.float32)
    dot[0, 20, 20] = 1
    radius, sigma = 6, 2
    out = motion_blur_image(dot, radius, sigma, angle)[0]
    i = np.arange(2 * radius + 1)
    weights = np.exp(-(i**2) / (2 * sigma**2))
    expected = np.zeros_like(out)
    expected[20 + step[0] * i, 20 + step[1] * i] = weights / weights.sum()
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_motion_blur_at_an_oblique_angle_stays_on_its_line():
    dot = np.zeros((1, 41, 41), dtype=np.float32)
    dot[0, 20, 20] = 1
    out = motion_blur_image(dot, 8, 3, 30.0)[0]
    rows, cols = np.nonzero(out)
    assert out.sum() == pytest.approx(1, abs=1e-6)
    # the dot lands at -(i cos 30, i sin 30), rounded: at most half a pixel off the line
    along = (20 - cols) * np.cos(np.pi / 6) + (20 - rows) * np.sin(np.pi / 6)
    off = (20 - cols) * np.sin(np.pi / 6) - (20 - rows) * np.cos(np.pi / 6)
    assert (np.abs(off) <= 0.5 * np.sqrt(2)).all() and (along >= 0).all()
    assert len(rows) == 17  # 2 * ceil(8) + 1 taps, no two on one pixel

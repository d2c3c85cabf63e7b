"""Sliding-window inference: windows that cover every voxel, logits averaged over overlaps,
and a result equal to the model on the whole volume wherever the model is local."""

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from vitmae.tasks.sliding_window import sliding_window, window_starts


@settings(max_examples=200, derandomize=True, deadline=None)
@given(n=st.integers(1, 200), size=st.integers(1, 64), overlap=st.floats(0.0, 0.95))
def test_windows_cover_the_axis_from_end_to_end(n, size, overlap):
    starts = window_starts(n, size, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if n <= size:
        assert starts == [0]
        return
    assert starts[-1] == n - size  # the last window is flush with the far end
    step = max(1, round(size * (1 - overlap)))
    assert all(b - a <= step for a, b in zip(starts, starts[1:], strict=False))  # no gap


def test_window_starts_by_hand():
    assert window_starts(10, 4, 0.5) == [0, 2, 4, 6]
    assert window_starts(10, 4, 0.0) == [0, 4, 6]
    assert window_starts(4, 4, 0.5) == [0]


@pytest.mark.parametrize("shape", [(13, 9, 16), (5, 7, 3), (8, 8, 8)])
@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.75])
def test_a_pointwise_model_gives_the_same_logits_as_on_the_whole_volume(shape, overlap):
    # a 1x1x1 convolution sees one voxel: however the volume is cut (and padded, where it is
    # smaller than the cube), each voxel's logits are the model's on that voxel
    torch.manual_seed(0)
    model = nn.Conv3d(2, 3, 1)
    vol = torch.randn(2, *shape)  # (C, D, H, W)
    out = sliding_window(model, vol, size=8, overlap=overlap, batch=3)
    assert out.shape == (3, *shape)
    torch.testing.assert_close(out, model(vol[None])[0], atol=1e-6, rtol=1e-6)


def test_overlapping_logits_are_averaged_not_summed():
    # each cube's logits are its own index: a voxel's result is the mean of the indices of the
    # cubes that hold it, between the first and last index, and every voxel is covered
    calls = []

    def numbered(cubes):  # (N, 1, S, S, S) -> (N, 1, S, S, S), cube k filled with k
        first = sum(len(c) for c in calls)
        calls.append(cubes)
        return torch.arange(first, first + len(cubes)).float().view(-1, 1, 1, 1, 1).expand(
            -1, 1, *cubes.shape[2:])

    out = sliding_window(numbered, torch.zeros(1, 10, 4, 4), size=4, overlap=0.5, batch=2)
    n = sum(len(c) for c in calls)
    assert n == 4  # starts 0, 2, 4, 6 along the first axis
    # voxels 0-1 only in cube 0, 2-3 in cubes 0 and 1, ..., 8-9 only in cube 3
    expect = torch.tensor([0, 0, 0.5, 0.5, 1.5, 1.5, 2.5, 2.5, 3, 3])
    torch.testing.assert_close(out[0, :, 0, 0], expect)


def test_padding_uses_the_given_value_and_is_cut_off():
    seen = []

    def identity(cubes):
        seen.append(cubes)
        return cubes

    vol = torch.ones(1, 3, 4, 5)
    out = sliding_window(identity, vol, size=6, pad_value=-7.0)
    assert out.shape == (1, 3, 4, 5) and torch.equal(out, vol)
    assert seen[0].shape == (1, 1, 6, 6, 6) and (seen[0][0, 0, 3:] == -7.0).all()

"""Attention maps beside the SDPA path: the recomputed weights are the ones SDPA applies,
rollout follows Abnar & Zuidema, and `vitmae visualize --attention` draws them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli.test_cli import PNG
from inference_runs import cli, folder_run
from PIL import Image

from vitmae.infer.attention import attention_weights, rollout, token_attention


@pytest.mark.parametrize("layout", [{}, {"rope": True}, {"class_token": False}])
def test_the_weights_are_softmax_qk_of_what_sdpa_is_given(micro_vit, monkeypatch, layout):
    """Replace SDPA by an explicit softmax(q k^T / sqrt(hd)) v that records its weights: the
    model's output does not change, and the recorded weights are attention_weights'."""
    vit = micro_vit(img_size=16, in_chans=3, **layout).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want_out = vit(x)
    seen = []

    def explicit(q, k, v, **kwargs):  # q, k, v: (B, nh, N, hd)
        assert not kwargs
        w = torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1)
        seen.append(w)
        return w @ v

    monkeypatch.setattr(F, "scaled_dot_product_attention", explicit)
    with torch.no_grad():
        out = vit(x)
    monkeypatch.undo()
    assert torch.allclose(out, want_out, atol=1e-5)
    got = attention_weights(vit, x)
    assert len(got) == len(seen) == vit.depth
    N = 16 + vit.num_prefix_tokens
    for g, s in zip(got, seen, strict=True):
        assert g.shape == (2, vit.num_heads, N, N)
        assert torch.allclose(g, s, atol=1e-6)


def test_rollout_and_token_attention_from_given_weights(micro_vit):
    """Closed forms on known weights: one block gives its own head-mean attention mixed half
    and half with the identity; the token map is the last block's class-token row."""
    vit = micro_vit(img_size=8, in_chans=1)  # 2x2 patches, N = 5
    g = torch.Generator().manual_seed(0)
    weights = [torch.rand(3, 2, 5, 5, generator=g).softmax(-1) for _ in range(2)]
    heads = token_attention(vit, weights)
    assert torch.equal(heads, weights[-1][:, :, 0, 1:].reshape(3, 2, 2, 2))
    one = rollout(vit, weights[:1])
    mixed = 0.5 * weights[0].mean(1) + 0.5 * torch.eye(5)  # (3, 5, 5)
    assert torch.allclose(one, mixed[:, 0, 1:].reshape(3, 2, 2))
    two = rollout(vit, weights)
    second = 0.5 * weights[1].mean(1) + 0.5 * torch.eye(5)
    assert torch.allclose(two, (second @ mixed)[:, 0, 1:].reshape(3, 2, 2))
    assert (two > 0).all() and (two.flatten(1).sum(1) < 1).all()  # the class token keeps some


def test_without_a_class_token_the_maps_read_the_mean_patch_query(micro_vit):
    vit = micro_vit(img_size=8, in_chans=1, class_token=False)
    weights = [torch.rand(1, 2, 4, 4).softmax(-1)]
    assert torch.allclose(token_attention(vit, weights),
                          weights[0].mean(2).reshape(1, 2, 2, 2))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return folder_run(tmp_path_factory.mktemp("attention"))


def test_visualize_attention_draws_named_images_or_the_runs_own(run, tmp_path):
    for extra in (["--images", run.parent / "data" / "test" / "cat"], []):
        out = tmp_path / f"a{len(extra)}.png"
        rc, lines, err = cli(["visualize", "--checkpoint", run, "--attention", "--out", out,
                              *extra])
        assert rc == 0, err
        assert lines == [f"wrote {out}"] and out.read_bytes()[:8] == PNG


def test_a_weights_file_needs_images(run, tmp_path):
    weights = sorted(run.glob("ckpt-*"))[-1] / "model.safetensors"
    copy = tmp_path / "w.safetensors"  # outside the run folder: a plain weights file
    copy.write_bytes(weights.read_bytes())
    rc, _, err = cli(["visualize", "--checkpoint", copy, "--attention", "--out",
                      tmp_path / "a.png"])
    assert rc == 2 and "--images" in err
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "x.png")
    rc, _, err = cli(["visualize", "--checkpoint", copy, "--attention", "--images",
                      tmp_path / "x.png", "--out", tmp_path / "a.png"])
    assert rc == 0, err

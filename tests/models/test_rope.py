"""Axial 2-D RoPE: attention scores that depend on patch offsets, MAE's kept patches, and
checkpoints that do not mix encoders with and without it."""

from __future__ import annotations

import pytest
import torch

from vitmae.models.rope import axial_rope, rotate, select
from vitmae.runs.checkpoint import CheckpointError
from vitmae.weights.encoder import load_encoder


def score(table: torch.Tensor, q: torch.Tensor, k: torch.Tensor, i: int, j: int) -> float:
    """Rotated q at token i against rotated k at token j (tokens: 0 = class, 1 + patch)."""
    qi = rotate(q.view(1, 1, 1, -1), table[:, i].view(2, 1, 1, 1, -1))
    kj = rotate(k.view(1, 1, 1, -1), table[:, j].view(2, 1, 1, 1, -1))
    return float((qi * kj).sum())


def test_query_key_product_depends_on_the_offset_only():
    h, w, hd = 5, 6, 16
    table = axial_rope(hd, h, w)  # (2, 1+L, hd)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(hd, generator=g), torch.randn(hd, generator=g)
    tok = lambda r, c: 1 + r * w + c  # noqa: E731  row-major patch -> token index
    same = [score(table, q, k, tok(r, c), tok(r + 1, c + 2)) for r, c in [(0, 0), (2, 3), (3, 1)]]
    assert max(same) - min(same) < 1e-4, same  # offset (1, 2) wherever it is
    other = score(table, q, k, tok(0, 0), tok(2, 1))  # offset (2, 1)
    assert abs(other - same[0]) > 1e-3
    # rows and columns rotate different channels: (0, 1) and (1, 0) are different offsets
    assert abs(score(table, q, k, tok(0, 0), tok(0, 1)) - score(table, q, k, tok(0, 0),
                                                                    tok(1, 0))) > 1e-3


def test_rotation_keeps_norms_and_leaves_the_class_token_alone():
    table = axial_rope(8, 3, 4)
    torch.testing.assert_close(table[:, 0], torch.stack([torch.ones(8), torch.zeros(8)]))
    x = torch.randn(2, 3, 13, 8)  # (B, nh, 1+L, hd)
    y = rotate(x, select(table, None))
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[:, :, 0], x[:, :, 0])


def test_kept_patches_take_their_own_rows():
    table = axial_rope(8, 3, 4)  # (2, 13, 8)
    ids_keep = torch.tensor([[5, 0], [11, 7]])  # (B, L_keep)
    rows = select(table, ids_keep)  # (2, B, 1, 1+L_keep, hd)
    assert rows.shape == (2, 2, 1, 3, 8)
    for b in range(2):
        torch.testing.assert_close(rows[:, b, 0], table[:, [0, *(ids_keep[b] + 1).tolist()]])


def test_head_width_not_divisible_by_four_is_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        axial_rope(6, 2, 2)


def test_rope_encoder_differs_from_the_plain_one_and_trains(micro_vit, micro_mae):
    x = torch.randn(2, 1, 16, 16)
    plain, rope = micro_vit(num_classes=0).eval(), micro_vit(num_classes=0, rope=True).eval()
    rope.load_state_dict({**plain.state_dict(), "rope_table": rope.rope_table})
    with torch.no_grad():  # same weights: only the rotation differs
        a, b = plain.forward_features(x), rope.forward_features(x)  # (B, 1+L, D)
    assert (a - b).abs().max() > 1e-2
    mae = micro_mae(rope=True)
    loss, _, _ = mae(x)
    loss.backward()
    no_grad = [n for n, p in mae.named_parameters() if p.grad is None or not p.grad.any()]
    assert torch.isfinite(loss) and no_grad == []


def test_encoders_with_and_without_rope_do_not_load_into_each_other(micro_vit):
    quiet = dict(log=lambda *_: None)
    plain, rope = micro_vit(num_classes=0), micro_vit(num_classes=0, rope=True)
    with pytest.raises(CheckpointError, match="rope_table"):
        load_encoder(plain, rope.state_dict(), **quiet)  # unexpected key
    with pytest.raises(CheckpointError, match="rope_table"):
        load_encoder(rope, plain.state_dict(), **quiet)  # missing key
    # another grid: the table is the model's own, the position embedding is resampled
    bigger = micro_vit(img_size=32, num_classes=0, rope=True)
    assert load_encoder(bigger, rope.state_dict(), **quiet) == set()
    assert bigger.rope_table.shape == (2, 1 + 64, 16)

"""Attacks in pixel space: PGD equals torchattacks' PGD, attacks stay in the eps-ball and in
[0, 1], accuracy falls as eps grows on toy problems a tiny model solves, random starts are
uniform in the ball and reproducible from a generator, SegPGD leaves void pixels out and
follows its lambda schedule, and no attack touches the model's mode or gradients."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vitmae.data.palette import VOID
from vitmae.errors import UserError
from vitmae.robust import attacks
from vitmae.robust.attacks import (
    Normalized,
    apgd_ce,
    default_loss,
    fgsm,
    nfgsm,
    pgd,
    segpgd,
    segpgd_loss,
    to_pixels,
)

MEAN, STD = (0.5, 0.4, 0.6), (0.2, 0.25, 0.3)
EPSILONS = [0, 2 / 255, 4 / 255, 8 / 255, 16 / 255]
LEVELS = (0.4, 0.5, 0.6)  # class k: pixels around LEVELS[k]; boundaries 0.05 away


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _levels(
    labels: torch.Tensor,
    shape: tuple[int, ...],
    g: torch.Generator,
    noise: float = 0.1,
    jitter: float = 0.0,
) -> torch.Tensor:
    """labels (B,) or (B, H, W) -> pixels (*shape) at the class's level, moved by
    U(-jitter, jitter) per label, plus U(-noise, noise) per pixel."""
    level = torch.tensor(LEVELS)[labels]  # (B,) or (B, H, W)
    level = level + jitter * (2 * torch.rand(labels.shape, generator=g) - 1)
    level = level.view(shape[0], 1, 1, 1) if labels.dim() == 1 else level[:, None]
    return (level + noise * (2 * torch.rand(shape, generator=g) - 1)).expand(shape).clamp(0, 1)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 300) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    model.eval()


@pytest.fixture(scope="module")
def toy():
    """A small MLP behind Normalized, trained on 3 brightness classes of (3, 8, 8) images:
    (model, x (96, 3, 8, 8) in [0, 1], y (96,))."""
    torch.manual_seed(0)
    g = _gen(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.ReLU(), nn.Linear(32, 3))
    model = Normalized(net, MEAN, STD)
    y_train = torch.randint(0, 3, (300,), generator=g)
    _train(model, _levels(y_train, (300, 3, 8, 8), g, jitter=0.035), y_train)
    y = torch.randint(0, 3, (96,), generator=g)
    return model, _levels(y, (96, 3, 8, 8), g, jitter=0.035), y


@pytest.fixture(scope="module")
def toy_seg():
    """A per-pixel MLP (1x1 convs) behind Normalized, trained on pixels of 3 brightness
    classes: (model, x (8, 3, 8, 8), y (8, 8, 8))."""
    torch.manual_seed(0)
    g = _gen(2)
    net = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 3, 1))
    model = Normalized(net, MEAN, STD)
    y_train = torch.randint(0, 3, (32, 8, 8), generator=g)
    _train(model, _levels(y_train, (32, 3, 8, 8), g, 0.04), y_train)
    y = torch.randint(0, 3, (8, 8, 8), generator=g)
    return model, _levels(y, (8, 3, 8, 8), g, 0.04), y


def _linear(seed: int = 0) -> tuple[Normalized, torch.Tensor]:
    """A linear classifier of (3, 4, 4) pixels into 2 classes, and the sign of its gradient
    (3, 4, 4) w.r.t. the pixels of class 1's logit minus class 0's."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 2)).eval()
    direction = (net[1].weight[1] - net[1].weight[0]).detach().view(3, 4, 4)
    return Normalized(net, MEAN, STD), direction.sign()


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_normalized_and_to_pixels_invert_the_normalisation():
    x = torch.rand(4, 3, 5, 5, generator=_gen())
    x_norm = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(to_pixels(x_norm, MEAN, STD), x)
    assert to_pixels(x_norm * 10, MEAN, STD).min() >= 0
    assert to_pixels(x_norm * 10, MEAN, STD).max() <= 1
    torch.testing.assert_close(Normalized(nn.Identity(), MEAN, STD)(x), x_norm)
    assert not Normalized(nn.Identity().eval(), MEAN, STD).training


def test_the_void_label_is_the_data_pipelines():
    assert attacks.VOID == VOID


def test_default_loss_follows_the_targets():
    logits = torch.randn(4, 300, generator=_gen())
    y = torch.full((4,), VOID)  # class 255 of 300 is a class, not void
    assert default_loss(logits, y) == F.cross_entropy(logits, y)
    targets = torch.randint(0, 2, (4, 300), generator=_gen())
    assert default_loss(logits, targets) == F.binary_cross_entropy_with_logits(
        logits, targets.float()
    )
    seg = torch.randn(2, 3, 4, 4, generator=_gen())
    masks = torch.randint(0, 3, (2, 4, 4), generator=_gen())
    masks[0] = VOID
    assert default_loss(seg, masks) == F.cross_entropy(seg[1:], masks[1:])


def test_pgd_equals_torchattacks_pgd():
    torchattacks = pytest.importorskip(
        "torchattacks", reason="torchattacks not installed (pip install torchattacks)"
    )
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 5)
    ).eval()
    model = Normalized(net, MEAN, STD)
    x = torch.rand(16, 3, 8, 8, generator=_gen())
    y = torch.randint(0, 5, (16,), generator=_gen())
    for random_start in (False, True):
        with torch.random.fork_rng(devices=[]):  # torchattacks draws its start globally
            torch.manual_seed(3)
            theirs = torchattacks.PGD(
                model, eps=8 / 255, alpha=2 / 255, steps=10, random_start=random_start
            )(x, y)
        ours = pgd(model, x, y, 8 / 255, 2 / 255, 10, random_start, _gen(3))
        assert (ours - x).abs().max() > 7 / 255  # the attack moved the images
        print(
            f"random_start={random_start}: max |ours - torchattacks| = "
            f"{(ours - theirs).abs().max().item():.3g}"
        )
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    assert not net.training


def test_accuracy_falls_as_eps_grows(toy):
    model, x, y = toy
    accs = [
        _acc(model, pgd(model, x, y, eps, eps / 4, 10, generator=_gen()), y) for eps in EPSILONS
    ]
    assert accs[0] == _acc(model, x, y) >= 0.95
    assert all(a >= b for a, b in zip(accs, accs[1:], strict=False)), accs
    assert accs[-1] < accs[0] - 0.5, accs


def test_eps_zero_gives_the_clean_images(toy):
    model, x, y = toy
    assert torch.equal(pgd(model, x, y, 0.0, 1 / 255, 5, generator=_gen()), x)
    assert torch.equal(fgsm(model, x, y, 0.0, random_start=True, generator=_gen()), x)


def test_perturbation_stays_in_the_ball_and_in_the_unit_cube():
    model, _ = _linear()
    x = torch.randint(0, 2, (8, 3, 4, 4), generator=_gen()).float()  # pixels at 0 and at 1
    x[:4] = torch.rand(4, 3, 4, 4, generator=_gen())
    y = torch.randint(0, 2, (8,), generator=_gen())
    eps = 8 / 255
    for x_adv in (
        pgd(model, x, y, eps, eps / 2, 10, generator=_gen()),  # 5 eps of steps
        fgsm(model, x, y, eps, random_start=True, generator=_gen()),
    ):
        assert (x_adv - x).abs().max() <= eps + 1e-6
        assert (x_adv - x).abs().max() >= eps - 1e-6  # the bound is reached
        assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_fgsm_is_the_sign_of_the_gradient_on_a_linear_model():
    model, sign = _linear()
    x = 0.25 + 0.5 * torch.rand(6, 3, 4, 4, generator=_gen())  # away from 0 and 1
    y = torch.zeros(6, dtype=torch.int64)  # the loss rises along class 1 minus class 0
    eps = 8 / 255
    torch.testing.assert_close(fgsm(model, x, y, eps), x + eps * sign, rtol=0, atol=1e-7)
    # Wong et al.'s step of 1.25 eps from any start in the ball ends at least 0.25 eps along
    # the gradient's sign (a step of eps could end at 0)
    delta = fgsm(model, x, y, eps, random_start=True, generator=_gen()) - x
    assert (delta * sign).min() >= 0.25 * eps - 1e-6


def test_nfgsm_steps_from_the_noisy_image_without_projecting_back():
    """de Jorge et al.'s N-FGSM: noise of 2 eps, a step of eps along the gradient's sign at
    the noisy point, clamped to [0, 1] only; on a linear model the sign is the same
    everywhere, so x_adv = clamp(x + noise + eps * sign)."""
    model, sign = _linear()
    x = 0.25 + 0.5 * torch.rand(64, 3, 4, 4, generator=_gen())  # away from 0 and 1
    y = torch.zeros(64, dtype=torch.int64)  # the loss rises along class 1 minus class 0
    eps = 8 / 255
    noise = pgd(nn.Identity(), x, None, 2 * eps, 1 / 255, 0, generator=_gen(3)) - x
    x_adv = nfgsm(model, x, y, eps, generator=_gen(3))
    torch.testing.assert_close(x_adv, (x + noise + eps * sign).clamp(0, 1), rtol=0, atol=1e-6)
    delta = x_adv - x
    assert delta.abs().max() <= 3 * eps + 1e-6
    assert delta.abs().max() > 2.5 * eps  # not projected back to the eps-ball
    # without noise: FGSM's step from the image itself
    torch.testing.assert_close(nfgsm(model, x, y, eps, noise=0.0), fgsm(model, x, y, eps))
    x01 = torch.randint(0, 2, (8, 3, 4, 4), generator=_gen()).float()  # pixels at 0 and 1
    out = nfgsm(model, x01, y[:8], eps, generator=_gen())
    assert out.min() >= 0 and out.max() <= 1


def test_random_start_is_uniform_in_the_ball_and_seeded():
    x = torch.full((4, 3, 16, 16), 0.5)
    eps = 8 / 255
    start = pgd(nn.Identity(), x, None, eps, 1 / 255, 0, generator=_gen(5)) - x  # 0 steps
    assert start.abs().max() <= eps + 1e-7
    assert start.min() < -0.95 * eps and start.max() > 0.95 * eps
    assert start.mean().abs() < 0.05 * eps and (start.abs() < eps / 2).float().mean() > 0.45
    assert torch.equal(pgd(nn.Identity(), x, None, eps, 1 / 255, 0, generator=_gen(5)) - x, start)


def test_the_generator_fixes_the_attack(toy):
    model, x, y = toy
    a, b, c = (pgd(model, x, y, 8 / 255, 2 / 255, 3, generator=_gen(s)) for s in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, pgd(model, x, y, 8 / 255, 2 / 255, 3, random_start=False))


def test_pgd_is_at_least_as_strong_as_fgsm(toy):
    model, x, y = toy
    eps = 8 / 255
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y).item()
        loss_fgsm = F.cross_entropy(model(fgsm(model, x, y, eps)), y).item()
        loss_pgd = F.cross_entropy(
            model(pgd(model, x, y, eps, eps / 4, 10, generator=_gen())), y
        ).item()
    assert loss_pgd >= loss_fgsm - 1e-6 and loss_fgsm > clean, (clean, loss_fgsm, loss_pgd)


def test_multi_label_targets_get_the_bce_loss():
    torch.manual_seed(0)
    model = Normalized(nn.Sequential(nn.Flatten(), nn.Linear(48, 5)).eval(), MEAN, STD)
    x = torch.rand(8, 3, 4, 4, generator=_gen())
    targets = torch.randint(0, 2, (8, 5), generator=_gen()).float()
    x_adv = pgd(model, x, targets, 8 / 255, 2 / 255, 5, generator=_gen())
    with torch.no_grad():
        before, after = (F.binary_cross_entropy_with_logits(model(v), targets) for v in (x, x_adv))
    assert after > before
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6


class _MeanPool(nn.Module):
    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v.mean((2, 3))  # (B, K, H, W) -> (B, K)


def _mixed_net(training: bool, pool: bool) -> nn.Sequential:
    """A 1x1-conv segmenter (pool=False: (B, 3, H, W) logits) or classifier ((B, 3)) whose
    dropout is in the other mode than the rest, and one of whose parameters is frozen."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 1), nn.Dropout(0.0), nn.Conv2d(4, 3, 1), *([_MeanPool()] if pool else [])
    )
    net.train(training)
    net[1].train(not training)
    net[0].bias.requires_grad_(False)
    return net


@pytest.mark.parametrize("training", [False, True])
def test_attacks_leave_the_model_as_they_found_it(training):
    seg, cls = _mixed_net(training, pool=False), _mixed_net(training, pool=True)
    x = torch.rand(2, 3, 4, 4, generator=_gen())
    masks = torch.randint(0, 3, (2, 4, 4), generator=_gen())
    labels = masks[:, 0, 0]
    eps, g = 8 / 255, _gen
    runs = [  # (net, attack, whether it must move x: APGD returns the images it cannot fool)
        (seg, lambda m: pgd(m, x, masks, eps, eps / 4, 2, generator=g()), True),
        (seg, lambda m: segpgd(m, x, masks, eps, eps / 4, 2, generator=g()), True),
        (cls, lambda m: fgsm(m, x, labels, eps, random_start=True, generator=g()), True),
        (cls, lambda m: pgd(m, x, labels, eps, eps / 4, 2, random_start=False), True),
    ]
    if importlib.util.find_spec("torchattacks") is not None:
        runs.append((cls, lambda m: apgd_ce(m, x, labels, eps, steps=3), False))
    for net, run, moves in runs:
        modes = [m.training for m in net.modules()]
        with torch.no_grad():  # the attacks take gradients all the same
            x_adv = run(Normalized(net, MEAN, STD))
        assert not (moves and torch.equal(x_adv, x))
        assert [m.training for m in net.modules()] == modes
        assert all(p.grad is None for p in net.parameters())
        assert [p.requires_grad for p in net.parameters()] == [True, False, True, True]


def test_segpgd_leaves_void_pixels_out():
    """A per-pixel model: a void pixel's loss is the only one its input moves, so with no
    random start a void pixel stays as it was, and an all-void batch is left unchanged."""
    net = _mixed_net(False, pool=False)
    model = Normalized(net, MEAN, STD)
    x = torch.rand(4, 3, 6, 6, generator=_gen())
    masks = torch.randint(0, 3, (4, 6, 6), generator=_gen())
    void = torch.rand(4, 6, 6, generator=_gen()) < 0.3  # (B, H, W)
    masks[void] = VOID
    moved = (segpgd(model, x, masks, 8 / 255, 2 / 255, 4, random_start=False) != x).any(1)
    assert not moved[void].any()
    assert moved[~void].float().mean() > 0.9
    all_void = torch.full_like(masks, VOID)
    assert torch.equal(segpgd(model, x, all_void, 8 / 255, 2 / 255, 4, random_start=False), x)
    # another void label, the same attack
    relabelled = masks.masked_fill(void, 7)
    assert torch.equal(
        segpgd(model, x, relabelled, 8 / 255, 2 / 255, 4, ignore_index=7, generator=_gen()),
        segpgd(model, x, masks, 8 / 255, 2 / 255, 4, generator=_gen()),
    )


def test_segpgd_loss_splits_correct_and_wrong_pixels():
    logits = torch.randn(2, 3, 5, 5, generator=_gen())
    y = torch.randint(0, 3, (2, 5, 5), generator=_gen())
    ce = F.cross_entropy(logits, y, reduction="none")  # (B, H, W)
    y[0, 0] = VOID
    valid, correct = y != VOID, logits.argmax(1) == y  # (B, H, W)
    assert correct.any() and (valid & ~correct).any()
    for lam in (0.0, 0.25, 0.5):
        expected = (1 - lam) * ce[correct].sum() + lam * ce[valid & ~correct].sum()
        torch.testing.assert_close(segpgd_loss(logits, y, lam), expected / valid.sum())


def test_segpgd_weighs_by_lambda_t(monkeypatch):
    """lambda_t = (t - 1) / (2 T) at steps t = 1..T."""
    seen = []

    def spy(logits, y, lam, ignore_index=VOID):
        seen.append(lam)
        return segpgd_loss(logits, y, lam, ignore_index)

    monkeypatch.setattr(attacks, "segpgd_loss", spy)
    model = Normalized(_mixed_net(False, pool=False), MEAN, STD)
    x = torch.rand(1, 3, 4, 4, generator=_gen())
    segpgd(model, x, torch.zeros(1, 4, 4, dtype=torch.int64), 8 / 255, 2 / 255, 4, generator=_gen())
    assert seen == [0, 1 / 8, 2 / 8, 3 / 8]


def test_segpgd_lowers_pixel_accuracy_as_eps_grows(toy_seg):
    model, x, y = toy_seg
    y = y.masked_fill(torch.rand(y.shape, generator=_gen()) < 0.2, VOID)
    valid = y != VOID
    accs = []
    for eps in EPSILONS:
        x_adv = segpgd(model, x, y, eps, eps / 4, 10, generator=_gen())
        assert (x_adv - x).abs().max() <= eps + 1e-6 and 0 <= x_adv.min() <= x_adv.max() <= 1
        with torch.no_grad():
            accs.append((model(x_adv).argmax(1) == y)[valid].float().mean().item())
    assert accs[0] >= 0.95
    assert all(a >= b for a, b in zip(accs, accs[1:], strict=False)), accs
    assert accs[-1] < accs[0] - 0.5, accs


def test_apgd_ce_lowers_accuracy_inside_the_ball(toy):
    pytest.importorskip(
        "torchattacks", reason="torchattacks not installed (pip install torchattacks)"
    )
    model, x, y = toy
    state = torch.get_rng_state()
    eps = 16 / 255
    x_adv = apgd_ce(model, x, y, eps, steps=20, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # its global seeding is undone
    assert (x_adv - x).abs().max() <= eps + 1e-6 and 0 <= x_adv.min() <= x_adv.max() <= 1
    assert _acc(model, x_adv, y) < _acc(model, x, y) - 0.5
    assert torch.equal(apgd_ce(model, x, y, eps, steps=20, seed=1), x_adv)


def test_apgd_ce_is_torchattacks_apgd_where_every_image_is_right(toy):
    """With every image classified right, torchattacks' APGD attacks the whole batch in one
    run, as apgd_ce always does: the same images."""
    torchattacks = pytest.importorskip(
        "torchattacks", reason="torchattacks not installed (pip install torchattacks)"
    )
    model, x, y = toy
    with torch.no_grad():
        right = model(x).argmax(1) == y
    x, y = x[right], y[right]
    theirs = torchattacks.APGD(model, norm="Linf", eps=8 / 255, steps=10, seed=1, loss="ce")
    torch.testing.assert_close(apgd_ce(model, x, y, 8 / 255, steps=10, seed=1), theirs(x, y),
                               rtol=0, atol=1e-6)


def test_apgd_ce_without_torchattacks_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # import torchattacks fails
    with pytest.raises(UserError, match="pip install torchattacks"):
        apgd_ce(nn.Identity(), torch.zeros(1, 3, 2, 2), torch.zeros(1), 8 / 255)

"""Attacks at the stored size (`vitmae.robust.lowres`, `--attack-size`, finetune.adv_size):
the perturbation is a size x size grid resized onto the input, within eps per pixel; on an
input that is an upsampled stored image it is the stored image's own threat model; at the
input's size nothing changes; training attacks on the grid too; bad sizes name their key."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vitmae.config import ConfigError, load_config
from vitmae.robust.attacked import attack_batch
from vitmae.robust.attacks import Normalized
from vitmae.robust.lowres import Lifted, at_size, lift
from vitmae.tasks import build_task
from vitmae.train.adversarial import AdversarialTask

EPS = 8 / 255


def _upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """As the data transforms resize a stored image: bilinear, antialiased."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


def _grid_residual(d: torch.Tensor, s: int) -> float:
    """How far d (B, C, H, H) is from every bilinear upsampling of an s x s grid: the largest
    entry of d - U pinv(U) d pinv(U)^T, U (H, s) the 1-D upsampling matrix."""
    H = d.shape[-1]
    U = F.interpolate(torch.eye(s, dtype=torch.float64)[None, None], size=(H, s),
                      mode="bilinear", align_corners=False)[0, 0]  # (H, s)
    P = U @ torch.linalg.pinv(U)  # (H, H), the projection onto U's columns
    d = d.double()
    return float((d - P @ d @ P.T).abs().max())


@pytest.fixture(scope="module")
def setting():
    """A fixed linear classifier of 3 x 32 x 32 pixels and 8 inputs upsampled from 8 x 8
    stored images in [0.2, 0.8] (so no clamping at eps): (net, inputs, stored, labels)."""
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    nn.init.normal_(model[1].weight, std=0.05, generator=g)
    net = Normalized(model.eval(), (0.0,) * 3, (1.0,) * 3)
    stored = 0.2 + 0.6 * torch.rand(8, 3, 8, 8, generator=g)  # (8, 3, 8, 8)
    x = _upsample(stored, 32)  # (8, 3, 32, 32)
    return net, x, stored, torch.randint(10, (8,), generator=g)


def test_at_the_inputs_own_size_nothing_changes(setting):
    net, x, _, _ = setting
    for size in (None, 32):
        f, z = at_size(net, x, size)
        assert f is net and z is x and lift(f, z) is z


def test_lifted_input_is_the_attacked_stored_image_upsampled(setting):
    """For any d within eps, lift(z0 + d) = upsample(stored + d): the stored image's threat
    model, whatever z0 (the area-resized input) is."""
    net, x, stored, _ = setting
    f, z0 = at_size(net, x, 8)
    d = EPS * (2 * torch.rand(z0.shape, generator=torch.Generator().manual_seed(1)) - 1)
    assert isinstance(f, Lifted) and z0.shape == (8, 3, 8, 8)
    torch.testing.assert_close(f.lift(z0 + d), _upsample(stored + d, 32), atol=1e-5, rtol=0)
    torch.testing.assert_close(f(z0 + d), net(_upsample(stored + d, 32)), atol=1e-4, rtol=0)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_attack_at_size_perturbs_a_grid_within_eps(setting, attack):
    net, x, _, y = setting
    batch, g = (x, y), torch.Generator().manual_seed(0)
    x_grid = attack_batch(net, "classify", batch, attack, EPS, 5, 0, g, size=8)
    x_pixel = attack_batch(net, "classify", batch, attack, EPS, 5, 0, g)
    assert x_grid.shape == x.shape
    assert (x_grid - x).abs().max() <= EPS + 1e-6
    assert (x_grid - x).abs().max() > EPS / 2  # it moved
    assert _grid_residual(x_grid - x, 8) < 1e-5  # an upsampled 8 x 8 perturbation
    assert _grid_residual(x_pixel - x, 8) > 1e-2  # the input's own pixels: not one
    loss = nn.CrossEntropyLoss()
    with torch.no_grad():
        assert loss(net(x_grid), y) > loss(net(x), y)
        assert loss(net(x_pixel), y) >= loss(net(x_grid), y)  # the larger set


def test_apgd_on_the_grid_gets_the_whole_batch(setting):
    """torchattacks' APGD calls the model on the images still classified right only; the
    grid's function is tied to its whole batch, so apgd_ce must give it the whole batch."""
    pytest.importorskip("torchattacks", reason="torchattacks not installed")
    net, x, _, _ = setting
    with torch.no_grad():
        y = net(x).argmax(1)
    y[:3] = (y[:3] + 1) % 10  # three images wrong already
    eps = 0.1  # large enough to fool this linear model on the coarse grid
    x_adv = attack_batch(net, "classify", (x, y), "apgd", eps, 5, 0, torch.Generator(), 8)
    assert x_adv.shape == x.shape and (x_adv - x).abs().max() <= eps + 1e-6
    assert _grid_residual(x_adv - x, 8) < 1e-5  # an upsampled 8 x 8 perturbation
    assert torch.equal(x_adv[:3], x[:3])  # wrong already: returned clean
    with torch.no_grad():
        fooled = net(x_adv[3:]).argmax(1) != y[3:]
    assert fooled.any()
    assert torch.equal(x_adv[3:][~fooled], x[3:][~fooled])  # not fooled: returned clean


def test_eps_zero_at_size_gives_the_clean_input(setting):
    net, x, _, y = setting
    x_adv = attack_batch(net, "classify", (x, y), "pgd", 0.0, 3, 0, torch.Generator(), 8)
    torch.testing.assert_close(x_adv, x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_training_attack_on_a_grid(setting, attack):
    net, x, _, y = setting
    task = AdversarialTask(build_task("classify", num_classes=10), attack, EPS, 2, None,
                           (0.0,) * 3, (1.0,) * 3, size=8)

    class Model(nn.Module):  # the training model's call: model(x, generator=g)
        def forward(self, x, generator=None):
            return net(x)

    x_adv = task.perturb(Model(), (x, y), torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert (x_adv - x).abs().max() > EPS / 4
    assert _grid_residual(x_adv - x, 8) < 1e-5


@pytest.mark.parametrize("size", [0, 17])
def test_bad_adv_size_names_its_key(size):
    with pytest.raises(ConfigError, match=r"finetune\.adv_size"):
        load_config("digits", ["finetune.adversarial=fgsm", f"finetune.adv_size={size}"])


def test_lifted_input_stays_in_the_pixel_range(setting):
    """Near-white and near-black inputs pushed by eps the wrong way stay in [0, 1]."""
    net, x, _, y = setting
    x = torch.cat([torch.ones_like(x[:4]), torch.zeros_like(x[4:])])  # (8, 3, 32, 32)
    f, z0 = at_size(net, x, 8)
    d = torch.cat([torch.full_like(z0[:4], EPS), torch.full_like(z0[4:], -EPS)])
    assert f.lift(z0 + d).min() >= 0 and f.lift(z0 + d).max() <= 1
    x_adv = attack_batch(net, "classify", (x, y), "pgd", EPS, 3, 0, torch.Generator(), 8)
    assert x_adv.min() >= 0 and x_adv.max() <= 1

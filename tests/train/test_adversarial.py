"""Adversarial fine-tuning (`finetune.adversarial`, `vitmae.train.adversarial`): the training
images the wrapped task sees are within eps of the clean ones in pixels and raise the loss;
the attack's random draws (start and drop-path) come from the step's generator only; a PGD-
trained micro ViT withstands PGD better than a clean-trained one; without the option the task
is not wrapped; a stopped FGSM run resumes bit-identical; bad values name their key."""

from __future__ import annotations

import os
import signal

import pytest
import torch
import torch.nn.functional as F
from reliability.cli_runs import assert_same_run, resume
from reliability.self_stop import stop_at_micro_batch

from vitmae.cli import main
from vitmae.config import ConfigError, DataConfig, ModelConfig, RunConfig, load_config
from vitmae.data import build_dataset
from vitmae.models.segmenter import build_segmenter
from vitmae.models.vit import build_vit
from vitmae.robust.attacks import Normalized, nfgsm, pgd, to_pixels
from vitmae.runs.checkpoint import list_checkpoints
from vitmae.runs.folder import run_differences
from vitmae.tasks import build_task
from vitmae.train.adversarial import AdversarialTask
from vitmae.train.runner import robust_training
from vitmae.train.steps import make_step

EPS = 0.1  # large for digits at 8 px, so that a few epochs show what adversarial training buys


def _tensors(split: str) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
    """The digits split at 8 px, unaugmented -> (images (N, 1, 8, 8) normalised, labels (N,),
    mean, std)."""
    ds = build_dataset(DataConfig(img_size=8), split, train=False)
    x = torch.stack([ds[i][0] for i in range(len(ds))])  # (N, 1, 8, 8)
    y = torch.tensor([int(ds[i][1]) for i in range(len(ds))])  # (N,)
    return x, y, ds.mean, ds.std


@pytest.fixture(scope="module")
def digits():
    return _tensors("train"), _tensors("test")


def _train(data, attack: str | None, epochs: int = 4, seed: int = 0) -> torch.nn.Module:
    """A micro ViT trained on the digits (batch 128, AdamW), on clean images or, with
    `attack`, through AdversarialTask (PGD: 2 steps) -> the model in eval mode."""
    x, y, mean, std = data
    torch.manual_seed(seed)
    model = build_vit(ModelConfig(arch="vit_micro_patch4", drop_path=0.0), 8, 1, 10)
    task = build_task("classify", num_classes=10)
    if attack is not None:
        task = AdversarialTask(task, attack, EPS, 2, None, mean, std)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - 127, 128):
            idx = order[i : i + 128]
            loss, _ = task.train_step(model, (x[idx], y[idx]), g)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.zero_grad(set_to_none=True)
    return model.eval()


@pytest.fixture(scope="module")
def clean_model(digits):
    return _train(digits[0], None)


@pytest.mark.parametrize("attack, reach", [("fgsm", 1), ("pgd", 1), ("nfgsm", 3)])
def test_adversarial_batch_is_within_eps_in_pixels_and_raises_the_loss(digits, clean_model,
                                                                         attack, reach):
    """Within eps of the clean pixels (N-FGSM: noise 2 eps plus a step of eps, unprojected)."""
    x, y, mean, std = (t[:128] if isinstance(t, torch.Tensor) else t for t in digits[1])
    task = AdversarialTask(build_task("classify", num_classes=10), attack, EPS, 3, None,
                           mean, std)
    x_adv = task.perturb(clean_model, (x, y), torch.Generator().manual_seed(0))
    pixels = to_pixels(x, mean, std)  # (B, 1, 8, 8) in [0, 1]
    assert (x_adv - pixels).abs().max() <= reach * EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert all(p.grad is None for p in clean_model.parameters())  # the input's gradient only
    net = Normalized(clean_model, mean, std)
    with torch.no_grad():
        clean, adv = F.cross_entropy(net(pixels), y), F.cross_entropy(net(x_adv), y)
    assert adv > clean + 0.5, (clean, adv)


def test_nfgsm_training_images_are_de_jorges(digits, clean_model):
    """finetune.adversarial=nfgsm perturbs with N-FGSM (noise 2 eps, a step of eps, not
    projected back), drawing from the step's generator."""
    x, y, mean, std = (t[:32] if isinstance(t, torch.Tensor) else t for t in digits[1])
    task = AdversarialTask(build_task("classify", num_classes=10), "nfgsm", EPS, 1, None,
                           mean, std)
    got = task.perturb(clean_model, (x, y), torch.Generator().manual_seed(0))
    pixels = to_pixels(x, mean, std)  # (B, 1, 8, 8) in [0, 1]
    want = nfgsm(Normalized(clean_model, mean, std), pixels, y, EPS,
                 generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert (got - pixels).abs().max() > 1.5 * EPS


def test_train_step_trains_on_the_attacked_images(digits, clean_model):
    x, y, mean, std = (t[:16] if isinstance(t, torch.Tensor) else t for t in digits[1])
    task = AdversarialTask(build_task("classify", num_classes=10), "fgsm", EPS, 1, None,
                           mean, std)
    seen = []
    task.task.train_step = lambda model, batch, g: seen.append(batch) or (torch.zeros(()), {})
    task.train_step(clean_model, (x, y), torch.Generator().manual_seed(0))
    x_adv = task.perturb(clean_model, (x, y), torch.Generator().manual_seed(0))
    imgs, labels = seen[0]
    assert torch.allclose(to_pixels(imgs, mean, std), x_adv, atol=1e-6)
    assert not torch.allclose(imgs, x, atol=1e-3) and torch.equal(labels, y)


@pytest.mark.parametrize("fraction, k", [(0.5, 8), (0.3, 5), (1.0, 16)])
def test_adv_fraction_attacks_the_first_images_and_keeps_the_rest(digits, clean_model,
                                                                  fraction, k):
    x, y, mean, std = (t[:16] if isinstance(t, torch.Tensor) else t for t in digits[1])
    task = AdversarialTask(build_task("classify", num_classes=10), "fgsm", EPS, 1, None,
                           mean, std, fraction=fraction)
    seen = []
    task.task.train_step = lambda model, batch, g: seen.append(batch) or (torch.zeros(()), {})
    task.train_step(clean_model, (x, y), torch.Generator().manual_seed(0))
    imgs, labels = seen[0]
    want = task.perturb(clean_model, (x[:k], y[:k]), torch.Generator().manual_seed(0))
    assert imgs.shape == x.shape and torch.equal(labels, y)
    torch.testing.assert_close(to_pixels(imgs[:k], mean, std), want, rtol=0, atol=1e-6)
    assert (to_pixels(imgs[:k], mean, std) - to_pixels(x[:k], mean, std)).abs().amax(
        (1, 2, 3)).min() > EPS / 2  # every one of the first k is attacked
    assert torch.equal(imgs[k:], x[k:])  # the rest as they came


def test_the_attack_draws_from_the_step_generator_only(digits):
    """Random start and drop-path in the attack's forward passes: the same generator gives
    the same images whatever torch's default generator holds, another seed others."""
    x, y, mean, std = (t[:16] if isinstance(t, torch.Tensor) else t for t in digits[1])
    torch.manual_seed(0)
    model = build_vit(ModelConfig(arch="vit_micro_patch4", drop_path=0.5), 8, 1, 10).train()
    task = AdversarialTask(build_task("classify", num_classes=10), "pgd", EPS, 3, None,
                           mean, std)

    def attacked(step_seed: int, default_seed: int) -> torch.Tensor:
        torch.manual_seed(default_seed)
        return task.perturb(model, (x, y), torch.Generator().manual_seed(step_seed))

    assert torch.equal(attacked(1, 0), attacked(1, 123))
    assert not torch.equal(attacked(1, 0), attacked(2, 0))


@pytest.mark.parametrize("task_name, attack", [("segment", "segpgd"), ("segment", "fgsm"),
                                              ("multilabel", "pgd")])
def test_segmentation_and_multilabel_batches_are_attacked(task_name, attack):
    """Masks (B, H, W) with void pixels and a segmenter with an auxiliary head (training
    mode: it returns (logits, aux)); 0/1 label vectors (B, K) under BCE."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 1, 16, 16, generator=g)  # (B, C, H, W) normalised
    torch.manual_seed(0)
    K = 3
    if task_name == "segment":
        model = build_segmenter(ModelConfig(arch="vit_micro_patch4", drop_path=0.1,
                                            seg_aux=0.4), 16, 1, K)
        y = torch.randint(0, K, (4, 16, 16), generator=g)  # (B, H, W)
        y[:, :4] = 255  # void
    else:
        model = build_vit(ModelConfig(arch="vit_micro_patch4"), 16, 1, K)
        y = torch.randint(0, 2, (4, K), generator=g)  # (B, K)
    task = AdversarialTask(build_task(task_name, num_classes=K, aux_weight=0.4), attack, EPS,
                           2, None, (0.5,), (0.5,))
    x_adv = task.perturb(model.train(), (x, y), torch.Generator().manual_seed(1))
    assert (x_adv - to_pixels(x, (0.5,), (0.5,))).abs().max() <= EPS + 1e-6
    loss, _ = task.train_step(model, (x, y), torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters()
                                        if p.requires_grad)


def test_sharded_adversarial_step_repeats_exactly(micro_vit):
    """run.shards=2 (the ViT-Tiny preset's): the attack runs on the worker threads, each
    shard's draws from its own generator; the same seed gives the same gradients."""
    g = torch.Generator().manual_seed(0)
    batch = torch.randn(8, 1, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)
    task = AdversarialTask(build_task("classify", num_classes=10), "fgsm", EPS, 1, None,
                           (0.5,), (0.5,))

    def grads() -> list[torch.Tensor]:
        model = micro_vit(drop_path=0.3)
        torch.manual_seed(7)
        with make_step(model, torch.device("cpu"), RunConfig(shards=2), accum=1) as step:
            step(task, batch, True)
        return [p.grad for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(grads(), grads(), strict=True))


@pytest.mark.parametrize("attack", ["pgd", "nfgsm"])
def test_adversarial_training_withstands_pgd_better_than_clean_training(digits, clean_model,
                                                                       attack):
    x, y, mean, std = digits[1]
    robust_model = _train(digits[0], attack)

    def robust_accuracy(model) -> float:
        net = Normalized(model, mean, std)
        x_adv = pgd(net, to_pixels(x, mean, std), y, EPS, EPS / 4, 10,
                    generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            return (net(x_adv).argmax(-1) == y).float().mean().item()

    clean_trained, adv_trained = robust_accuracy(clean_model), robust_accuracy(robust_model)
    assert adv_trained > clean_trained + 0.15, (clean_trained, adv_trained)


def test_default_alpha_is_the_papers():
    task = build_task("classify", num_classes=10)
    fgsm = AdversarialTask(task, "fgsm", 8 / 255, 7, None, (0.5,), (0.5,))
    pgd7 = AdversarialTask(task, "pgd", 8 / 255, 7, None, (0.5,), (0.5,))
    assert fgsm.alpha == pytest.approx(10 / 255) and pgd7.alpha == pytest.approx(20 / 7 / 255)
    assert AdversarialTask(task, "nfgsm", 8 / 255, 7, None, (0.5,), (0.5,)).alpha == 8 / 255
    assert AdversarialTask(task, "pgd", 8 / 255, 7, 2 / 255, (0.5,), (0.5,)).alpha == 2 / 255


def test_without_the_options_the_task_is_not_wrapped():
    """adversarial=none, corruption_aug=0: the engine steps the task itself, as before."""
    ds = build_dataset(DataConfig(), "train", train=False)
    task = build_task("classify", num_classes=10)
    assert robust_training(load_config("digits"), task, ds) is task
    cfg = load_config("digits", ["task=segment", "finetune.adversarial=pgd"])
    assert robust_training(cfg, task, ds).attack == "segpgd"  # SegPGD-AT for segmentation
    cfg = load_config("digits", ["finetune.adversarial=nfgsm", "finetune.adv_fraction=0.5"])
    wrapped = robust_training(cfg, task, ds)
    assert (wrapped.attack, wrapped.fraction) == ("nfgsm", 0.5)


# 128 digits / batch 32 = 4 steps per epoch, 2 epochs; records every 3 steps, so the stop at
# step 5 falls between two records; drop-path and patch dropout draw in the attack's passes
FINETUNE = ("-c", "digits", "model.arch=vit_micro_patch4", "data.subset=128",
            "data.batch_size=32", "finetune.optim.epochs=2", "finetune.optim.warmup_epochs=1",
            "model.drop_path=0.2", "model.patch_drop=0.25", "finetune.adversarial=fgsm",
            "run.log_interval=3", "run.threads=1")


def finetune_argv(out, name: str, *extra: str) -> list[str]:
    return ["finetune", *FINETUNE, f"run.output_dir={out}", f"run.name={name}", *extra]


def test_fgsm_run_stopped_mid_epoch_resumes_bit_identical(tmp_path, monkeypatch, capsys):
    assert main(finetune_argv(tmp_path, "ref")) == 0
    stop_at_micro_batch(5, lambda: os.kill(os.getpid(), signal.SIGTERM), monkeypatch.setattr)
    code = main(finetune_argv(tmp_path, "stopped"))
    monkeypatch.undo()
    run = tmp_path / "stopped"
    assert code == 128 + signal.SIGTERM
    assert list_checkpoints(run)[-1].name == "ckpt-000000005"
    code, out = resume(run, capsys, "finetune")
    assert code == 0, out
    assert "at epoch 1, batch 1, step 5" in out
    assert_same_run(run, tmp_path / "ref")  # the same seed twice: the same run
    assert main(finetune_argv(tmp_path, "seed1", "run.seed=1")) == 0
    assert run_differences(tmp_path / "seed1", tmp_path / "ref")  # the comparison can fail


@pytest.mark.parametrize("override, key", [
    ("finetune.adversarial=pgd2", "finetune.adversarial"),
    ("finetune.adv_eps=0", "finetune.adv_eps"),
    ("finetune.adv_eps=8", "finetune.adv_eps"),  # 8/255 written in 0-255 units
    ("finetune.adv_steps=0", "finetune.adv_steps"),
    ("finetune.adv_alpha=0", "finetune.adv_alpha"),
    ("finetune.adv_alpha=-0.01", "finetune.adv_alpha"),
    ("finetune.adv_fraction=0", "finetune.adv_fraction"),
    ("finetune.adv_fraction=1.5", "finetune.adv_fraction"),
])
def test_bad_adversarial_values_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("digits", ["finetune.adversarial=fgsm", override])


def test_adversarial_linear_probe_and_a_yaml_eps_are_accepted(tmp_path):
    preset = tmp_path / "adv.yaml"
    preset.write_text("# fgsm\nfinetune:\n  adversarial: fgsm\n  adv_eps: 0.0313725490196\n"
                      "  linear_probe: true\n")
    cfg = load_config(str(preset))
    assert cfg.finetune.adv_eps == pytest.approx(8 / 255) and cfg.finetune.linear_probe

"""The engine's `fit`: gradient accumulation is exact, steps and records are as configured,
gradients are clipped as asked; evaluation runs the model in eval mode."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import Dataset

from vitmae.config import DataConfig, OptimConfig, RunConfig
from vitmae.runs.folder import RunDir
from vitmae.tasks import build_task
from vitmae.train import engine
from vitmae.train.engine import evaluate, fit, run_evaluator
from vitmae.train.optim import build_optimizer, param_groups


class Images(Dataset):
    """N seeded random (1, 16, 16) images with labels 0..K-1."""

    def __init__(self, n: int, K: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 16, 16, generator=g)  # (N, C, H, W)
        self.y = torch.randint(0, K, (n,), generator=g)  # (N,)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


def _train(micro_vit, path, batch_size: int, accum: int, n: int = 32, val=None, shards: int = 1,
           **optim):
    """Fit a fresh seeded micro classifier; -> (model, metrics)."""
    model = micro_vit(num_classes=4)
    cfg = OptimConfig(epochs=1, lr=1e-3, warmup_epochs=0.5, accum_iter=accum, **optim)
    opt = build_optimizer(param_groups(model, cfg.weight_decay), cfg, cfg.lr)
    path.mkdir()
    metrics = fit(model, build_task("classify", num_classes=4), opt, cfg.lr, cfg, Images(n),
                  val, DataConfig(batch_size=batch_size), RunConfig(log_interval=1, shards=shards),
                  RunDir(path),
                  torch.device("cpu"), {}, log=lambda _: None)
    return model, metrics


def test_accumulating_two_half_batches_equals_one_full_batch(micro_vit, tmp_path):
    # Same images in the same order; the lr of a step is read at its first micro-batch (MAE),
    # so both runs see the same lr at each of their 4 steps (warmup, then cosine).
    full, _ = _train(micro_vit, tmp_path / "full", batch_size=8, accum=1)
    accum, _ = _train(micro_vit, tmp_path / "accum", batch_size=4, accum=2)
    start = micro_vit(num_classes=4)
    pairs = zip(full.parameters(), start.parameters(), strict=True)
    assert all(not torch.equal(p, q) for p, q in pairs)
    for (name, p), q in zip(full.named_parameters(), accum.parameters(), strict=True):
        torch.testing.assert_close(q, p, atol=2e-6, rtol=1e-4, msg=name)
    lrs = [[r["lr"] for r in map(json.loads, (tmp_path / d / "metrics.jsonl").open())
            if r["split"] == "train"] for d in ("full", "accum")]
    assert lrs[0] == lrs[1] and len(lrs[0]) == 4


def test_fit_records_steps_and_checkpoints(micro_vit, tmp_path):
    _, metrics = _train(micro_vit, tmp_path / "run", batch_size=4, accum=2, n=20,
                        val=Images(10, seed=1))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2]  # 20 images: 5 batches of 4 -> 2 whole steps
    for key in ("loss", "acc", "lr", "img_s", "peak_mem_mb"):
        assert all(key in r for r in train), key
    assert records[-1]["split"] == "val" and records[-1]["n"] == 10 == metrics["n"]
    assert (tmp_path / "run" / "ckpt-000000002" / "model.safetensors").is_file()


def test_too_few_images_for_one_accumulated_step(micro_vit, tmp_path):
    with pytest.raises(ValueError, match="accumulation"):
        _train(micro_vit, tmp_path / "run", batch_size=4, accum=3, n=8)


def test_img_s_counts_the_time_of_every_epoch_since_the_last_record(micro_vit, tmp_path,
                                                                    monkeypatch):
    # 4 epochs of 2 steps (batch 8 of 16 images), one record every 4 steps: each record
    # covers 2 epochs. A fake clock advances 1 s per reading, so each epoch's loop takes at
    # least 1 s and a record's 32 images at least 2 s; timing only the epoch the record falls
    # in would give 32 img/s.
    import vitmae.train.engine

    clock = iter(range(10_000))
    monkeypatch.setattr(vitmae.train.engine.time, "perf_counter", lambda: float(next(clock)))
    model = micro_vit(num_classes=4)
    cfg = OptimConfig(epochs=4, lr=1e-3, warmup_epochs=0)
    opt = build_optimizer(param_groups(model, cfg.weight_decay), cfg, cfg.lr)
    fit(model, build_task("classify", num_classes=4), opt, cfg.lr, cfg, Images(16), None,
        DataConfig(batch_size=8), RunConfig(log_interval=4), RunDir(tmp_path),
        torch.device("cpu"), {}, log=lambda _: None)
    recs = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").open())
            if r["split"] == "train"]
    assert [r["step"] for r in recs] == [4, 8]
    assert all(0 < r["img_s"] <= 32 / 2 for r in recs), [r["img_s"] for r in recs]


def test_evaluate_sees_every_image_once(micro_vit):
    model = micro_vit(num_classes=4)
    result = evaluate(model, build_task("classify", num_classes=4), Images(13), 4,
                      torch.device("cpu"))
    assert result["n"] == 13 and 0.0 <= result["top1"] <= 1.0
    assert model.training  # evaluation restores the mode


@pytest.mark.parametrize("accum", [1, 2])
def test_clip_grad_bounds_the_norm_the_optimizer_steps_with(micro_vit, tmp_path, monkeypatch,
                                                             accum):
    """The norm of the whole (accumulated) gradient at each optimizer step is at most
    clip_grad; without clipping the same steps see larger norms."""
    norms = []
    adam_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    clip = 0.05
    _train(micro_vit, tmp_path / "free", batch_size=8 // accum, accum=accum)
    free, norms[:] = list(norms), []
    _train(micro_vit, tmp_path / "clipped", batch_size=8 // accum, accum=accum, clip_grad=clip)
    assert len(norms) == len(free) == 4
    assert min(free) > 2 * clip  # so that clipping has something to do
    assert max(norms) <= clip * (1 + 1e-5), norms
    assert norms[0] == pytest.approx(clip, rel=1e-5)  # the first step is clipped, not zeroed


class RecordsMode(torch.nn.Module):
    """Logits (B, K) from a linear layer over the mean pixel; records `training` of each call."""

    def __init__(self, K: int = 4):
        super().__init__()
        self.linear, self.modes = torch.nn.Linear(1, K), []

    def forward(self, x: torch.Tensor, generator=None) -> torch.Tensor:  # (B, C, H, W)
        self.modes.append(self.training)
        return self.linear(x.mean((1, 2, 3))[:, None])  # (B, K)


def test_evaluation_runs_the_model_in_eval_mode_and_restores_training(tmp_path):
    model = RecordsMode()
    evaluate(model, build_task("classify", num_classes=4), Images(10), 4, torch.device("cpu"))
    assert model.modes == [False] * 3 and model.training  # batches of 4, 4, 2
    model.modes.clear()
    cfg = OptimConfig(epochs=1, lr=1e-3, warmup_epochs=0)
    opt = build_optimizer(param_groups(model, cfg.weight_decay), cfg, cfg.lr)
    fit(model, build_task("classify", num_classes=4), opt, cfg.lr, cfg, Images(8),
        Images(6, seed=1), DataConfig(batch_size=4), RunConfig(), RunDir(tmp_path),
        torch.device("cpu"), {}, log=lambda _: None)
    assert model.modes == [True, True, False, False]  # 2 training steps, then 2 val batches


def test_evaluation_leaves_a_model_in_eval_mode_in_eval_mode_and_takes_no_gradient():
    model = RecordsMode().eval()
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(torch.is_grad_enabled()))
    evaluate(model, build_task("classify", num_classes=4), Images(6), 4, torch.device("cpu"))
    assert model.modes == [False, False] and not model.training and seen == [False, False]


def test_a_given_evaluator_is_the_one_fed_and_returned():
    # `vitmae evaluate --save-predictions` passes its own evaluator (with a sink): the batches
    # must reach it, not a fresh one of the task's
    task = build_task("classify", num_classes=4)
    mine = task.evaluator()
    ev = run_evaluator(RecordsMode(), task, Images(6), 4, torch.device("cpu"), evaluator=mine)
    assert ev is mine and int(mine.sums["cm"].sum()) == 6


@pytest.mark.parametrize("amp", ["auto", "bf16", "fp32"])
def test_the_runs_amp_setting_reaches_the_evaluation(monkeypatch, amp):
    # run.amp decides the evaluation's autocast as the training's ("auto": bf16 on CUDA only)
    seen = []
    real = engine.autocast
    monkeypatch.setattr(engine, "autocast", lambda device, a: seen.append(a) or real(device, a))
    kwargs = {} if amp == "auto" else {"amp": amp}
    task, cpu = build_task("classify", num_classes=4), torch.device("cpu")
    evaluate(RecordsMode(), task, Images(4), 4, cpu, **kwargs)
    run_evaluator(RecordsMode(), task, Images(4), 4, cpu, **kwargs)
    assert seen == [amp, amp]


def test_to_device_moves_every_tensor_of_nested_batches():
    meta = torch.device("meta")  # a device of its own on any machine
    batch = [torch.zeros(2), (torch.ones(1), "id"), 3]
    moved = engine.to_device(batch, meta)
    assert type(moved) is list and type(moved[1]) is tuple
    assert moved[0].device == meta and moved[1][0].device == meta
    assert moved[1][1] == "id" and moved[2] == 3


def test_evaluation_results_do_not_depend_on_drop_path(micro_vit):
    """With drop-path on, a model left in training mode would give other predictions on each
    pass; the evaluator's must be those of the deterministic eval-mode model."""
    model = micro_vit(num_classes=4, drop_path=0.5)
    data = Images(24)
    with torch.no_grad():
        model.eval()
        pred = model(data.x).argmax(-1)  # (N,)
        model.train()
    want = (pred == data.y).float().mean().item()
    for _ in range(3):
        r = evaluate(model, build_task("classify", num_classes=4), data, 8, torch.device("cpu"))
        assert r["top1"] == pytest.approx(want)

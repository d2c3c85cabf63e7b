"""Pretraining monitors (k-NN, linear probe, reconstruction) and the TensorBoard sink."""

from __future__ import annotations

import json
import weakref

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from vitmae.config import ConfigError, load_config
from vitmae.runs.checkpoint import list_checkpoints
from vitmae.train.monitors import check_labelled, due, extract_features, knn_classify, linear_probe
from vitmae.train.runner import run_pretrain

SMALL = ["model.arch=vit_micro_patch4", "data.subset=128", "data.batch_size=64",
         "pretrain.optim.epochs=2", "run.log_interval=1"]


def reference_knn(bank, labels, queries, K, k, t):
    """InstDisc / DINO voting, one query at a time."""
    out = []
    for q in queries:
        sim = bank @ q  # (N,)
        top = sim.argsort(descending=True)[:k]
        votes = torch.zeros(K, dtype=sim.dtype)
        for i in top:
            votes[labels[i]] += torch.exp(sim[i] / t)
        out.append(int(votes.argmax()))
    return torch.tensor(out)


def test_knn_votes_as_the_reference():
    g = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(200, 16, generator=g), dim=1)
    labels = torch.randint(0, 5, (200,), generator=g)
    queries = F.normalize(torch.randn(50, 16, generator=g), dim=1)
    for k, t in ((1, 0.07), (5, 0.1), (20, 0.07), (500, 1.0)):  # k > N: every bank row votes
        got = knn_classify(bank, labels, queries, 5, k, t, chunk=7)
        assert torch.equal(got, reference_knn(bank, labels, queries, 5, min(k, 200), t)), (k, t)
    nearest = labels[(queries @ bank.T).argmax(1)]
    assert torch.equal(knn_classify(bank, labels, queries, 5, k=1), nearest)


def test_knn_and_probe_separate_clusters():
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(3, 8, generator=g) * 5  # (K, D)
    y = torch.arange(300) % 3
    x = centers[y] + torch.randn(300, 8, generator=g)  # (N, D)
    train, test = slice(0, 200), slice(200, 300)
    xn = F.normalize(x, dim=1)
    assert torch.equal(knn_classify(xn[train], y[train], xn[test], 3), y[test])
    assert torch.equal(linear_probe(x[train], y[train], x[test], 3), y[test])


def test_monitors_are_due_every_n_epochs_and_after_the_last():
    assert [e for e in range(1, 8) if due(e, 3, 7)] == [3, 6, 7]
    assert not any(due(e, 0, 7) for e in range(1, 8))


def test_knn_needs_class_labels():
    masks = [(torch.zeros(1, 8, 8), torch.zeros(8, 8, dtype=torch.long))]
    with pytest.raises(ConfigError, match="pretrain.knn_every"):
        check_labelled(masks, "pretrain.knn_every")
    check_labelled([(torch.zeros(1, 8, 8), 3)], "pretrain.knn_every")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 2-epoch pretraining with every monitor and TensorBoard on, and with none."""
    root = tmp_path_factory.mktemp("runs")
    on = ["pretrain.knn_every=1", "pretrain.probe=true", "run.tensorboard=true"]
    off = ["pretrain.knn_every=0", "pretrain.recon_every=0"]
    for name, extra in (("monitored", on), ("plain", off)):
        run_pretrain(load_config("digits", [*SMALL, *extra, f"run.output_dir={root}",
                                            f"run.name={name}"]), log=lambda *_: None)
    return root


def _records(run) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_monitor_records_and_pictures(runs):
    monitor = [r for r in _records(runs / "monitored") if r["split"] == "monitor"]
    # before the first step (the starting weights), then after each epoch
    assert [(r["epoch"], r["step"]) for r in monitor] == [(0, 0), (1, 2), (2, 4)]
    for r in monitor:
        assert 0 <= r["knn_top1"] <= 1 and 0 <= r["probe_top1"] <= 1
        assert r["baseline_knn_top1"] == pytest.approx(46 / 450)  # digits test: 46 of one class
        assert r["recon_loss"] > 0
        assert r["recon_png"] == f"recon/epoch-{r['epoch']:03d}.png"
        assert (runs / "monitored" / r["recon_png"]).read_bytes().startswith(b"\x89PNG")
    assert not [r for r in _records(runs / "plain") if r["split"] == "monitor"]
    assert not (runs / "plain" / "recon").exists()


def test_monitors_do_not_change_the_training(runs):
    a, b = (load_file(str(list_checkpoints(runs / n)[-1] / "model.safetensors"))
            for n in ("monitored", "plain"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in r.items() if k not in ("img_s", "peak_mem_mb")}
             for r in _records(runs / "plain")]
    assert strip == [{k: v for k, v in r.items() if k not in ("img_s", "peak_mem_mb")}
                     for r in _records(runs / "monitored") if r["split"] != "monitor"]


def test_tensorboard_gets_every_number_and_picture_of_metrics_jsonl(runs):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs / "monitored"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    want_scalars, want_images = set(), set()
    for r in _records(runs / "monitored"):
        for key, value in r.items():
            if isinstance(value, float):
                want_scalars.add((f"{r['split']}/{key}", r["step"], value))
            elif key.endswith("_png"):
                want_images.add((f"{r['split']}/{key[:-4]}", r["step"]))
    got_scalars = {(tag, e.step, e.value) for tag in events.Tags()["scalars"]
                   for e in events.Scalars(tag)}
    got_images = {(tag, e.step) for tag in events.Tags()["images"] for e in events.Images(tag)}
    assert {(t, s) for t, s, _ in got_scalars} == {(t, s) for t, s, _ in want_scalars}
    for tag, step, value in want_scalars:  # float32 in the event file
        assert any(t == tag and s == step and v == pytest.approx(value, rel=1e-6)
                   for t, s, v in got_scalars)
    assert got_images == want_images and len(want_images) == 3  # epochs 0, 1, 2
    assert not list((runs / "plain").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("override, key", [("pretrain.knn_every=-1", "pretrain.knn_every"),
                                           ("pretrain.knn_k=0", "pretrain.knn_k"),
                                           ("pretrain.knn_t=0", "pretrain.knn_t"),
                                           ("pretrain.knn_train=0", "pretrain.knn_train"),
                                           ("pretrain.recon_every=-2", "pretrain.recon_every"),
                                           ("pretrain.probe=true", "pretrain.probe")])
def test_bad_monitor_settings_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, ["pretrain.knn_every=0", override])


def test_extracting_features_keeps_no_earlier_batch_of_tokens_alive(micro_vit):
    """The pooled class token is a view of a (B, 1+L, D) token map: kept as it is, a pass over
    N images would hold N token maps (a 224 px ViT-Tiny: 151 KB an image) until the end."""
    encoder = micro_vit(img_size=16, num_classes=0, global_pool="token").eval()
    pool, refs = encoder.pool, []

    def spy(tokens):
        alive = [i for i, r in enumerate(refs) if r() is not None]
        assert not alive, f"the pooled views of batches {alive} are still referenced"
        pooled = pool(tokens)  # (B, D), a view of tokens
        assert pooled.untyped_storage().nbytes() == tokens.untyped_storage().nbytes()
        refs.append(weakref.ref(pooled))
        return pooled

    encoder.pool = spy
    data = TensorDataset(torch.randn(12, 1, 16, 16), torch.arange(12) % 3)
    feats, labels = extract_features(encoder, data, 4, torch.device("cpu"))
    assert feats.shape == (12, encoder.embed_dim) and len(refs) == 3
    with torch.no_grad():
        assert torch.allclose(feats, pool(encoder.forward_features(data.tensors[0])), atol=1e-6)

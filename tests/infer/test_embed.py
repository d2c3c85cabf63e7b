"""`vitmae embed`: one feature row per readable image, a CSV of paths in the same order."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from inference_runs import cli, folder_run, mae_run
from PIL import Image

from vitmae.infer.embed import features
from vitmae.infer.image_files import list_images
from vitmae.infer.model import open_model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return folder_run(tmp_path_factory.mktemp("embed"))


def read_csv(path) -> list[str]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path"]
    return [r[0] for r in rows[1:]]


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_features_are_the_pooled_encoder_tokens_in_the_csvs_order(run, tmp_path, pool):
    images = run.parent / "data" / "test"
    out = tmp_path / "feats.npy"
    rc, _, err = cli(["embed", "--checkpoint", run, images, "--out", out, "--pool", pool,
                      "--batch-size", "4"])
    assert rc == 0, err
    feats, paths = np.load(out), read_csv(tmp_path / "feats.csv")
    assert paths == [str(p) for p in list_images([images])] and feats.shape == (6, 32)
    assert feats.dtype == np.float32
    model = open_model(run)
    x = torch.stack([model.preprocess(model.preprocess.read(p)) for p in paths])
    with torch.no_grad():
        tokens = model.encoder.forward_features(x)  # (6, 1+L, 32)
    want = tokens[:, 0] if pool == "cls" else tokens[:, 1:].mean(1)
    assert np.allclose(feats, want.numpy(), atol=1e-5)


def test_the_default_pool_is_the_models_own(run, tmp_path):
    images = run.parent / "data" / "test"
    for name, pool in (("default", []), ("mean", ["--pool", "mean"])):
        assert cli(["embed", "--checkpoint", run, images, "--out", tmp_path / f"{name}.npy",
                    *pool])[0] == 0
    assert open_model(run).encoder.global_pool == "avg"
    assert np.array_equal(np.load(tmp_path / "default.npy"), np.load(tmp_path / "mean.npy"))


def test_the_default_pool_of_a_class_token_model_is_its_class_token(tmp_path):
    """A model pooled by its class token (model.global_pool=token): the default is not the
    mean, which the avg-pool runs above would not tell apart."""
    run = folder_run(tmp_path / "token", "model.global_pool=token")
    assert open_model(run).encoder.global_pool == "token"
    images = run.parent / "data" / "test"
    feats = {}
    for name, pool in (("default", []), ("cls", ["--pool", "cls"]), ("mean", ["--pool", "mean"])):
        rc, _, err = cli(["embed", "--checkpoint", run, images, "--out", tmp_path / f"{name}.npy",
                          *pool])
        assert rc == 0, err
        feats[name] = np.load(tmp_path / f"{name}.npy")
    assert np.array_equal(feats["default"], feats["cls"])
    assert not np.allclose(feats["default"], feats["mean"], atol=1e-3)


def test_unreadable_images_are_left_out_of_both_files(run, tmp_path):
    good = run.parent / "data" / "test" / "cat" / "0.png"
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    out = tmp_path / "f.npy"
    rc, _, err = cli(["embed", "--checkpoint", run, good, tmp_path / "bad.jpg", "--out", out])
    assert rc == 1 and "bad.jpg" in err and "1 images, 1 could not be read" in err
    assert read_csv(tmp_path / "f.csv") == [str(good)] and np.load(out).shape == (1, 32)


def test_an_mae_run_embeds_with_its_encoder(tmp_path):
    mae = mae_run(tmp_path)
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "g.png")
    rc, _, err = cli(["embed", "--checkpoint", mae, tmp_path / "g.png", "--out",
                      tmp_path / "f.npy"])
    assert rc == 0, err
    assert np.load(tmp_path / "f.npy").shape == (1, 32)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_a_batchs_features_own_their_memory(run, pool):
    """The class token is a view of the whole token map: the features of a batch must not keep
    it alive (N images would hold N token maps until the .npy is written)."""
    encoder = open_model(run).encoder
    (h, w), p = encoder.patch_embed.grid_size, encoder.patch_size
    for B in (1, 3):
        f = features(encoder, torch.randn(B, encoder.in_chans, h * p, w * p), pool)  # (B, D)
        assert f.untyped_storage().nbytes() == B * encoder.embed_dim * f.element_size()

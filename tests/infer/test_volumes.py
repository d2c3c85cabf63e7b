"""predict, embed and ONNX export of a model of volumes (model.spatial_dims=3): `.npy` and NIfTI
files go through the run's own evaluation transform, bad files are named and skipped, the
exported graph gives PyTorch's logits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_runs import cli
from volume_files import fake_medmnist3d

from vitmae.config import DataConfig
from vitmae.data import build_dataset
from vitmae.infer.image_files import list_images
from vitmae.infer.model import open_model

nib = pytest.importorskip("nibabel")

VOLUME_RUN = ["model.arch=vit_micro_patch4", "model.spatial_dims=3", "model.embed_dim=48",
              "model.decoder_embed_dim=48", "model.decoder_depth=1", "model.decoder_num_heads=2",
              "data.dataset=medmnist3d", "data.img_size=8", "pretrain.recon_every=0",
              "data.batch_size=4", "run.log_interval=1",
              # a few steps at a high constant lr, so that the head's logits are far from its
              # near-zero initialisation and a wrong transform shows in the probabilities
              "finetune.optim.epochs=3", "finetune.optim.warmup_epochs=0",
              "finetune.optim.lr=0.01", "finetune.optim.schedule=constant"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("volumes")
    fake_medmnist3d(root / "data", side=8)
    rc, _, err = cli(["finetune", "-c", "digits", *VOLUME_RUN, f"data.root={root / 'data'}",
                      "data.val_split=val", f"run.output_dir={root}", "run.name=vol"])
    assert rc == 0, err
    return root / "vol"


@pytest.fixture(scope="module")
def test_set(run) -> tuple[np.ndarray, torch.utils.data.Dataset]:
    """The fake test volumes (N, 8, 8, 8) uint8 as stored, and the run's test data set."""
    data = run.parent / "data"
    vols = np.load(data / "medmnist3d" / "adrenalmnist3d.npz")["test_images"]
    ds = build_dataset(DataConfig(dataset="medmnist3d", root=str(data), img_size=8), "test",
                       train=False)
    return vols, ds


def save_nifti(vol: np.ndarray, path: Path) -> Path:
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    return path


def test_predict_volume_files_as_the_run_evaluates_them(run, test_set, tmp_path):
    vols, ds = test_set
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.npy")
        np.save(paths[-1], vols[i])
    paths.append(save_nifti(vols[3], tmp_path / "3.nii.gz"))
    model = open_model(run)
    with torch.no_grad():
        want = model.module(torch.stack([ds[i][0] for i in range(4)])).softmax(-1)  # (4, 2)
    rc, lines, err = cli(["predict", "--checkpoint", run, *paths, "--topk", "2"])
    assert rc == 0, err
    assert "4 volumes, 0 could not be read" in err
    for path, line, probs in zip(paths, lines, want, strict=True):
        record = json.loads(line)
        assert record["path"] == str(path)
        assert {r["class"] for r in record["topk"]} == {"normal", "hyperplasia"}
        got = torch.tensor([r["prob"] for r in sorted(record["topk"], key=lambda r: r["index"])])
        assert (probs - 0.5).abs().max() > 0.01  # a trained head, not a coin
        torch.testing.assert_close(got, probs, atol=1e-5, rtol=0)


def test_predict_resizes_any_volume_and_names_bad_files(run, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "big.npy", rng.normal(0, 1, (12, 10, 9)).astype(np.float32))
    np.save(tmp_path / "flat.npy", np.zeros((4, 4), np.float32))  # 2-D: not a volume
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti file")
    (tmp_path / "notes.txt").write_text("ignored: not a volume file")
    assert list_images([tmp_path], volumes=True) == sorted(
        tmp_path / n for n in ("big.npy", "broken.nii.gz", "flat.npy"))
    rc, lines, err = cli(["predict", "--checkpoint", run, tmp_path])
    assert rc == 1
    assert [json.loads(line)["path"] for line in lines] == [str(tmp_path / "big.npy")]
    assert "flat.npy" in err and "3-D array" in err
    assert "broken.nii.gz" in err and "cannot read volume" in err
    assert "1 volumes, 2 could not be read" in err


def test_embed_volumes(run, test_set, tmp_path):
    vols, ds = test_set
    for i in range(3):
        np.save(tmp_path / f"{i}.npy", vols[i])
    out = tmp_path / "feats.npy"
    rc, _, err = cli(["embed", "--checkpoint", run, tmp_path, "--out", out])
    assert rc == 0, err
    feats = np.load(out)
    model = open_model(run)
    with torch.no_grad():
        tokens = model.encoder.forward_features(torch.stack([ds[i][0] for i in range(3)]))
    want = model.encoder.pool(tokens, model.encoder.global_pool).numpy()  # (3, D)
    np.testing.assert_allclose(feats, want, atol=1e-5)


def test_volume_model_refuses_image_only_options(run, tmp_path):
    np.save(tmp_path / "0.npy", np.zeros((8, 8, 8), np.uint8))
    rc, _, err = cli(["predict", "--checkpoint", run, tmp_path, "--crop-pct", "0.9"])
    assert rc == 2 and "--crop-pct" in err
    rc, _, err = cli(["visualize", "--checkpoint", run, "--attention", "--images",
                      tmp_path / "0.npy"])
    assert rc == 2 and "volumes" in err


def test_onnx_export_of_a_volume_classifier(run, test_set, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    _, ds = test_set
    out = tmp_path / "vol.onnx"
    rc, _, err = cli(["export", run, "--to", "onnx", out])
    assert rc == 0, err
    assert "(batch, 1, 8, 8, 8)" in err
    x = torch.stack([ds[i][0] for i in range(3)])  # (3, 1, 8, 8, 8)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"pixel_values": x.numpy()})[0])
    with torch.no_grad():
        want = open_model(run).module(x)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    np.save(tmp_path / "0.npy", test_set[0][0])
    # predict on the ONNX file: its own preprocessing, from the metadata
    rc, lines, err = cli(["predict", "--checkpoint", out, tmp_path / "0.npy"])
    assert rc == 0, err
    top = json.loads(lines[0])["topk"][0]
    assert top["prob"] == pytest.approx(want[0].softmax(-1).max().item(), abs=1e-4)
    rc, _, err = cli(["export", run, "--to", "onnx", tmp_path / "q.onnx", "--int8"])
    assert rc == 2 and "--int8" in err

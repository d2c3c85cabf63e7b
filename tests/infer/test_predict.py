"""`vitmae predict` on image files: classification, multi-label, segmentation, weights files,
bad inputs; and the listing of files, folders and globs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from data.test_voc import SIZES
from inference_runs import cli, folder_run, mae_run, voc_run
from PIL import Image
from safetensors.torch import save_file

from vitmae.config import Config, ModelConfig, config_from_dict
from vitmae.data import build_dataset
from vitmae.infer.image_files import list_images
from vitmae.infer.model import open_model
from vitmae.models import load_finetuned
from vitmae.models.vit import build_vit
from vitmae.runs.checkpoint import read_weights
from vitmae.runs.folder import read_data_info
from vitmae.tasks.segment import predict as segment_predict


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict")
    voc = root / "voc"
    return {"folder": folder_run(root), "seg": voc_run(voc, "voc_seg", "segment"),
            "multilabel": voc_run(voc, "voc_cls", "multilabel"), "voc": voc,
            "data": root / "data"}


def _cfg(run: Path) -> Config:
    return config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))


def records(lines: list[str]) -> dict[str, dict]:
    return {r["path"]: r for r in map(json.loads, lines)}


def test_list_images_takes_files_folders_and_globs_once_each(tmp_path):
    for name in ("a/1.png", "a/b/2.JPG", "a/notes.txt", "c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    got = list_images([tmp_path / "a", tmp_path / "c.png", str(tmp_path / "*.png"),
                       tmp_path / "a" / "notes.txt"])
    assert got == [tmp_path / "a/1.png", tmp_path / "a/b/2.JPG", tmp_path / "c.png",
                   tmp_path / "a/notes.txt"]
    assert list_images([str(tmp_path / "**" / "2.*")]) == [tmp_path / "a/b/2.JPG"]
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "empty", tmp_path / "missing.png", str(tmp_path / "*.gif")):
        with pytest.raises(FileNotFoundError, match=str(bad).replace("*", r"\*")):
            list_images([bad])


def test_the_run_records_what_predicting_needs(runs):
    info = read_data_info(runs["folder"])
    assert info["classes"] == ["cat", "dog"] and info["in_chans"] == 3
    assert info["dataset"] == "folder" and len(info["mean"]) == 3


def test_classification_goes_through_the_runs_own_evaluation_transform(runs):
    rc, lines, err = cli(["predict", "--checkpoint", runs["folder"], runs["data"] / "test",
                          "--topk", "5", "--batch-size", "4"])
    assert rc == 0 and "6 images, 0 could not be read" in err
    got = records(lines)
    ds = build_dataset(_cfg(runs["folder"]).data, "test", train=False)
    model = load_finetuned(_cfg(runs["folder"]), read_weights(runs["folder"]), 3, 2).eval()
    pre = open_model(runs["folder"]).preprocess
    assert len(got) == len(ds) == 6
    for (path, _), (img, _) in zip(ds.samples, (ds[i] for i in range(len(ds))), strict=True):
        assert torch.equal(pre(pre.read(path)), img)  # the data set's evaluation input
        with torch.no_grad():
            probs = model(img[None])[0].softmax(-1)
        top = got[str(path)]["topk"]
        assert [t["prob"] for t in top] == sorted((t["prob"] for t in top), reverse=True)
        assert len(top) == 2 and {t["class"] for t in top} == {"cat", "dog"}
        for t in top:
            assert t["class"] == ["cat", "dog"][t["index"]]
            assert t["prob"] == pytest.approx(float(probs[t["index"]]), abs=1e-6)


def test_results_do_not_depend_on_the_batch(runs):
    args = ["predict", "--checkpoint", runs["folder"], runs["data"] / "test"]
    one, four = (records(cli([*args, "--batch-size", n])[1]) for n in ("1", "4"))
    assert one.keys() == four.keys()
    for path in one:
        for a, b in zip(one[path]["topk"], four[path]["topk"], strict=True):
            assert a["index"] == b["index"] and a["prob"] == pytest.approx(b["prob"], abs=1e-6)


def test_any_mode_is_predicted_and_unreadable_files_are_named_counted_and_fail(runs, tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (19, 23), dtype=np.uint8), "L").save(tmp_path / "g.png")
    Image.fromarray(rng.integers(0, 256, (18, 18, 4), dtype=np.uint8), "RGBA").save(
        tmp_path / "rgba.png")
    Image.fromarray(rng.integers(0, 65535, (17, 21), dtype=np.uint16)).save(tmp_path / "w.png")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).convert("CMYK").save(
        tmp_path / "cmyk.jpg")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "notes.txt").write_text("not an image")
    rc, lines, err = cli(["predict", "--checkpoint", runs["folder"], tmp_path,
                          tmp_path / "notes.txt"])
    assert rc == 1
    assert sorted(Path(p).name for p in records(lines)) == ["cmyk.jpg", "g.png", "rgba.png",
                                                           "w.png"]
    assert "broken.png" in err and "notes.txt" in err
    assert err.strip().splitlines()[-1].startswith("vitmae predict: 4 images, 2 could not be read")


def test_an_empty_folder_or_a_missing_path_is_an_error_before_any_work(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    for arg in (tmp_path / "empty", tmp_path / "nope.jpg"):
        rc, lines, err = cli(["predict", "--checkpoint", runs["folder"], arg])
        assert rc == 2 and not lines and str(arg) in err


def test_segmentation_writes_palette_masks_at_the_original_size_and_overlays(runs, tmp_path):
    photos = runs["voc"] / "VOCdevkit" / "VOC2012" / "JPEGImages"
    rc, lines, err = cli(["predict", "--checkpoint", runs["seg"], photos, "--out", tmp_path])
    assert rc == 0, err
    got = records(lines)
    assert len(got) == len(SIZES)
    cfg = _cfg(runs["seg"])
    ds = build_dataset(cfg.data, "mini_val", train=False)
    model = load_finetuned(cfg, read_weights(runs["seg"]), 3, 21).eval()
    pre = open_model(runs["seg"]).preprocess
    for i, id_ in enumerate(ds.ids):  # the run's own evaluation at the original size
        img, _, size = ds[i]
        assert torch.equal(pre(pre.read(photos / f"{id_}.jpg")), img)
        with torch.no_grad():
            want = segment_predict(model, img[None], size[None])[0]
        r = got[str(photos / f"{id_}.jpg")]
        with Image.open(r["mask"]) as m:
            assert m.mode == "P" and m.size[::-1] == SIZES[id_]
            assert torch.equal(torch.from_numpy(np.array(m)).long(), want)
        with Image.open(r["overlay"]) as o:
            assert o.mode == "RGB" and o.size[::-1] == SIZES[id_]
        assert sum(c["fraction"] for c in r["classes"]) == pytest.approx(1.0)
        assert all(c["class"] == ds.classes[c["index"]] for c in r["classes"])


def test_segmentation_needs_an_out_folder_that_spares_the_inputs(runs, tmp_path):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "x.png")
    for extra in ([], ["--out", tmp_path]):
        rc, lines, err = cli(["predict", "--checkpoint", runs["seg"], tmp_path / "x.png", *extra])
        assert rc == 2 and not lines and "--out" in err


def test_multilabel_lists_every_label_over_the_threshold(runs):
    photos = runs["voc"] / "VOCdevkit" / "VOC2012" / "JPEGImages"
    args = ["predict", "--checkpoint", runs["multilabel"], photos / "2007_000001.jpg"]
    (everything,) = records(cli([*args, "--threshold", "0"])[1]).values()
    labels = everything["labels"]
    assert len(labels) == 20 and labels[0]["class"] in read_data_info(runs["multilabel"])[
        "classes"]
    assert [x["prob"] for x in labels] == sorted((x["prob"] for x in labels), reverse=True)
    middle = labels[9]["prob"]
    (some,) = records(cli([*args, "--threshold", str(middle)])[1]).values()
    assert [x["index"] for x in some["labels"]] == [x["index"] for x in labels[:10]]
    (none,) = records(cli([*args, "--threshold", "1.01"])[1]).values()
    assert none["labels"] == []


def test_a_model_without_a_head_points_to_embed(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    rc, lines, err = cli(["predict", "--checkpoint", mae_run(tmp_path), tmp_path / "x.png"])
    assert rc == 2 and "embed" in err


@pytest.fixture
def timm_file(tmp_path):
    """A timm-layout classifier (7 classes, no names) at 16 px, with mean/std metadata."""
    torch.manual_seed(0)
    vit = build_vit(ModelConfig(arch="vit_micro_patch4", embed_dim=128, num_heads=2,
                                global_pool="token", pos_embed="learned", drop_path=0.0),
                    16, 3, 7).eval()
    torch.nn.init.normal_(vit.head.weight, std=0.5)  # so that the classes differ
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path),
              metadata={"mean": "0.5,0.5,0.5", "std": "0.25,0.5,0.5"})
    return vit, path


def test_a_weights_file_predicts_with_its_own_size_and_normalisation(timm_file, tmp_path):
    vit, path = timm_file
    pixels = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    x = torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255  # (1, 3, 16, 16)
    for flags, mean, std in (([], 0.5, torch.tensor([0.25, 0.5, 0.5])),
                             (["--mean", "0.1", "0.2", "0.3", "--std", "1", "1", "1"],
                              torch.tensor([0.1, 0.2, 0.3]), 1.0)):
        rc, lines, err = cli(["predict", "--checkpoint", path, tmp_path / "p.png", "--topk", "7",
                              "--crop-pct", "1", *flags])  # 16 px already: no resampling
        assert rc == 0, err
        (r,) = records(lines).values()
        with torch.no_grad():
            want = vit((x - torch.as_tensor(mean).view(1, -1, 1, 1)) /
                       torch.as_tensor(std).view(1, -1, 1, 1))[0].softmax(-1)
        assert [t["class"] for t in r["topk"]] == [None] * 7
        for t in r["topk"]:
            assert t["prob"] == pytest.approx(float(want[t["index"]]), abs=1e-6)


VIT_TINY = "pretrained/vit_tiny_patch16_224.augreg_in21k_ft_in1k.safetensors"


def test_the_real_vit_tiny_matches_timm_end_to_end(tmp_path):
    """The ImageNet ViT-Tiny/16 file: the same logits as timm's model, timm's transform."""
    path = Path(os.environ.get("VITMAE_DATA", "/nonexistent")) / VIT_TINY
    if not path.is_file():
        pytest.skip(f"VITMAE_DATA not set, or no {VIT_TINY} under it")
    timm = pytest.importorskip("timm")
    from timm.data import create_transform

    ref = timm.create_model("vit_tiny_patch16_224", pretrained=True,
                            pretrained_cfg_overlay={"file": str(path)}).eval()
    model = open_model(path, log=lambda _: None)
    assert model.task == "classify" and model.num_classes == 1000
    assert model.classes[0] == "tench, Tinca tinca" and len(model.classes) == 1000
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    photo = Image.fromarray(small).resize((400, 300), Image.BICUBIC)  # smooth, not square
    photo.save(tmp_path / "photo.png")
    x = model.preprocess(photo)[None]  # (1, 3, 224, 224)
    want = create_transform(224, interpolation="bicubic", crop_pct=0.875, mean=(0.5,) * 3,
                            std=(0.5,) * 3)(photo)[None]
    assert torch.allclose(x, want, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(model.logits(x), ref(x), atol=1e-4)
        probs = ref(x)[0].softmax(-1)
    rc, lines, _ = cli(["predict", "--checkpoint", path, tmp_path / "photo.png"])
    (r,) = records(lines).values()
    assert rc == 0 and [t["index"] for t in r["topk"]] == probs.topk(5).indices.tolist()
    assert [t["class"] for t in r["topk"]] == [model.classes[i] for i in probs.topk(5).indices]

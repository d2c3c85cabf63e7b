"""Bad data. Unreadable images, odd modes, tiny images, labels out of range,
empty or missing folders: each is converted correctly or refused naming the file and what was
expected; with data.skip_bad=true unreadable images are skipped and reported every epoch."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from vitmae.cli import main
from vitmae.config import DataConfig
from vitmae.data import build_dataset
from vitmae.data.checks import BadImageError, open_image

RGB = (200, 100, 50)


def _png(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def _gray16(values) -> Image.Image:
    return Image.fromarray(np.array([values], dtype=np.uint16))  # mode I;16


# (how to make the image, file format, expected RGB of its first pixel(s))
MODES = {
    "RGBA": (lambda: Image.new("RGBA", (4, 4), (*RGB, 0)), "PNG", [RGB]),
    "LA": (lambda: Image.new("LA", (4, 4), (77, 10)), "PNG", [(77, 77, 77)]),
    "CMYK": (lambda: Image.new("CMYK", (4, 4), (0, 0, 0, 0)), "JPEG", [(255, 255, 255)]),
    "P": (lambda: _palette(), "PNG", [RGB]),
    "P+transparency": (lambda: _with_transparency(), "PNG", [RGB]),
    "1": (lambda: Image.new("1", (4, 4), 1), "PNG", [(255, 255, 255)]),
    "L": (lambda: Image.new("L", (4, 4), 77), "PNG", [(77, 77, 77)]),
    # 16-bit: scaled, not clipped (Image.convert would make all three white)
    "I;16": (lambda: _gray16([0, 32896, 65535]), "PNG", [(0,) * 3, (128,) * 3, (255,) * 3]),
    "I": (lambda: Image.fromarray(np.array([[0, 32896, 65535]], np.int32)), "TIFF",
          [(0,) * 3, (128,) * 3, (255,) * 3]),
    "F": (lambda: Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)), "TIFF",
          [(0,) * 3, (128,) * 3, (255,) * 3]),
}


def _palette() -> Image.Image:
    im = Image.new("P", (4, 4), 0)
    im.putpalette([*RGB, *[0] * 765])
    return im


def _with_transparency() -> Image.Image:
    im = _palette()
    im.info["transparency"] = 255  # an unused palette index
    return im


@pytest.mark.parametrize("mode", MODES)
def test_image_modes_become_rgb(tmp_path, mode):
    make, fmt, expected = MODES[mode]
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(_png(make(), fmt))
    im = open_image(path)
    assert im.mode == "RGB"
    got = [im.getpixel((x, 0)) for x in range(len(expected))]
    tol = 3 if fmt == "JPEG" else 0
    assert np.abs(np.array(got, int) - np.array(expected, int)).max() <= tol, got


def test_rgb_where_grayscale_is_expected(tmp_path):
    (tmp_path / "c.png").write_bytes(_png(Image.new("RGB", (4, 4), (90, 90, 90))))
    im = open_image(tmp_path / "c.png", mode="L")
    assert im.mode == "L" and im.getpixel((0, 0)) == 90


def _valid_png() -> bytes:
    rng = np.random.default_rng(0)
    return _png(Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)))


BROKEN = {
    "truncated.png": lambda: _valid_png()[:300],
    "truncated.jpg": lambda: _png(Image.new("RGB", (64, 64), RGB), "JPEG")[:200],
    "empty.png": lambda: b"",
    "text.jpg": lambda: b"this is not an image",
    "bad_crc.png": lambda: _valid_png()[:40] + b"\xff" + _valid_png()[41:],
    # a header claiming 100000 x 100000 pixels: Pillow's DecompressionBombError, not an OSError
    "bomb.bmp": lambda: _bomb_bmp(),
}


def _bomb_bmp() -> bytes:
    raw = bytearray(_png(Image.new("RGB", (4, 4)), "BMP"))
    raw[18:26] = (100_000).to_bytes(4, "little") * 2  # width, height
    return bytes(raw)


@pytest.mark.parametrize("name", BROKEN)
def test_unreadable_image_is_named(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BROKEN[name]())
    with pytest.raises(BadImageError, match="expected an image file") as e:
        open_image(path)
    assert str(path) in str(e.value)


def _folder(root, split="train", n=4, size=(8, 8), bad=()):
    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / split / cls / f"{i}.png")
    for name in bad:
        (root / split / "a" / name).write_bytes(BROKEN[name]())
    return root


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (3, 200)])
@pytest.mark.parametrize("train", [True, False])
def test_images_smaller_than_the_crop_are_upscaled(tmp_path, size, train):
    _folder(tmp_path, n=1, size=size)
    ds = build_dataset(DataConfig(dataset="folder", root=str(tmp_path), img_size=16),
                       "train", train)
    assert all(ds[i][0].shape == (3, 16, 16) for i in range(len(ds)))


def test_missing_empty_and_imageless_folders_are_named(tmp_path):
    cfg = DataConfig(dataset="folder", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train")):
        build_dataset(cfg, "train", True)
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="no images in class sub-folders"):
        build_dataset(cfg, "train", True)
    (tmp_path / "train" / "a").mkdir()
    (tmp_path / "train" / "a" / "notes.txt").write_text("no image")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train")):
        build_dataset(cfg, "train", True)


def test_cifar_label_out_of_range_is_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.zeros((3, 3072), np.uint8)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": [1, 12, 3]}))
    with pytest.raises(ValueError, match=r"test_batch: label 12 at position 1 is outside the "
                                         r"class range 0\.\.9"):
        build_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)), "test", False)


def _folder_pretrain(root, out, *extra):
    return ["pretrain", "model.arch=vit_micro_patch4", "model.decoder_embed_dim=32",
            "model.decoder_depth=1", "model.decoder_num_heads=2", "data.dataset=folder",
            f"data.root={root}", "data.val_split=val", "data.img_size=16", "data.batch_size=5",
            "pretrain.optim.epochs=2", "run.threads=1", f"run.output_dir={out}", "run.name=r",
            *extra]


def test_skip_bad_reports_skipped_files_every_epoch(tmp_path, capsys):
    bad = ("truncated.png", "text.jpg")
    root = _folder(_folder(tmp_path / "data", bad=bad), "val", n=2)
    # 8 good + 2 bad files, batch 5: every file is visited in each of the 2 epochs
    code = main(_folder_pretrain(root, tmp_path, "data.skip_bad=true", "data.num_workers=1"))
    out = capsys.readouterr().out
    assert code == 0
    paths = sorted(str(root / "train" / "a" / name) for name in bad)
    for epoch in (1, 2):  # reported by the main process although a worker hit them
        assert f"epoch {epoch}: skipped 2 bad files in train (data.skip_bad)" in out
    for path in paths:  # each named once, with the reason, the first time it is skipped
        assert out.count(f"skipped {path}: cannot read image") == 1
    recs = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    skipped = [r for r in recs if "skipped_files" in r]
    assert [(r["epoch"], r["skipped_files"], sorted(r["skipped"])) for r in skipped] == [
        (1, 2, paths), (2, 2, paths)]


def test_without_skip_bad_an_unreadable_image_stops_the_run_naming_it(tmp_path, capsys):
    root = _folder(_folder(tmp_path / "data", bad=("text.jpg",)), "val", n=2)
    code = main(_folder_pretrain(root, tmp_path))
    err = capsys.readouterr().err
    assert code == 2
    assert str(root / "train" / "a" / "text.jpg") in err and "data.skip_bad=true" in err


def _voc_finetune(root, out, *extra):
    return ["finetune", "-c", "voc_seg", "model.arch=vit_micro_patch4", "model.seg_head=linear",
            f"data.root={root}", "data.img_size=16", "data.batch_size=3", "data.num_workers=0",
            "data.train_split=mini_train", "data.val_split=mini_val", "finetune.optim.epochs=1",
            "run.threads=1", f"run.output_dir={out}", "run.name=voc", *extra]


def test_a_voc_mask_value_that_is_no_class_stops_the_run_naming_the_mask(tmp_path, capsys):
    from data.test_voc import set_mask, write_voc

    write_voc(tmp_path / "data")
    mask = set_mask(tmp_path / "data", "2007_000003", 21)  # was: IndexError in the loss
    code = main(_voc_finetune(tmp_path / "data", tmp_path))
    err = capsys.readouterr().err
    assert code == 2
    assert f"{mask}: mask values 21 are outside the classes 0..20" in err


def test_skip_bad_skips_truncated_voc_photos_in_both_splits_and_records_them(tmp_path, capsys):
    from data.test_voc import VOC_DIR, write_voc

    write_voc(tmp_path / "data")
    photos = [tmp_path / "data" / VOC_DIR / "JPEGImages" / f"{id_}.jpg"
              for id_ in ("2007_000001", "2007_000004")]  # in mini_train; in mini_val
    for photo in photos:
        photo.write_bytes(photo.read_bytes()[:200])
    code = main(_voc_finetune(tmp_path / "data", tmp_path, "data.skip_bad=true"))
    out = capsys.readouterr().out
    assert code == 0
    assert "epoch 1: skipped 1 bad file in train (data.skip_bad)" in out
    assert "epoch 1: skipped 1 bad file in val (data.skip_bad)" in out
    recs = [json.loads(x) for x in (tmp_path / "voc" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["split"], r["skipped_files"], r["skipped"]) for r in recs
            if "skipped_files" in r] == [("train", 1, [str(photos[0])]),
                                         ("val", 1, [str(photos[1])])]
    code = main(["evaluate", "--checkpoint", str(tmp_path / "voc"), "data.skip_bad=true"])
    out = capsys.readouterr().out
    assert code == 0 and "skipped 1 bad file (data.skip_bad)" in out and str(photos[1]) in out

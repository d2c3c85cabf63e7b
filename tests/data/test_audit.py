"""`vitmae check-data`: every item read once, every problem named, exit 0 only when clean;
on tiny image folders, VOC folders and seg_folders written by the tests."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.test_seg_folder import write_split
from data.test_voc import VOC_DIR, set_mask, write_voc
from vitmae.cli import main
from vitmae.config import load_config
from vitmae.data.audit import check_data


def image_folder(root):
    """train/{a,b} and test/{a,b}, two different 6x4 images each (RGB, one grey)."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                arr = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
                im = Image.fromarray(arr).convert("L" if (cls, i) == ("b", 1) else "RGB")
                im.save(root / split / cls / f"{i}.png")
    return root


def check(capsys, *args):
    """-> (exit code, stdout) of `vitmae check-data`."""
    code = main(["check-data", *args])
    return code, capsys.readouterr().out


def test_a_clean_folder_is_reported_and_exits_0(tmp_path, capsys):
    root = image_folder(tmp_path)
    code, out = check(capsys, "-c", "digits", "data.dataset=folder", f"data.root={root}",
                      "--workers", "1")
    assert code == 0, out
    assert "split 'train': 4 items, 4 read without error, 2 classes" in out
    assert "items per class: a 2, b 2" in out
    assert "image sizes (W x H): 1 distinct, most common 6x4 (4)" in out
    assert "image modes: RGB 3, L 1" in out and "no problems found" in out


def test_every_bad_file_empty_class_and_duplicate_is_named_and_exits_1(tmp_path, capsys):
    root = image_folder(tmp_path)
    broken = [root / "train" / "a" / "cut.png", root / "test" / "b" / "text.png"]
    broken[0].write_bytes((root / "train" / "a" / "0.png").read_bytes()[:60])
    broken[1].write_bytes(b"not an image")
    (root / "train" / "c").mkdir()  # an empty class folder, missing from test
    shutil.copy(root / "train" / "b" / "1.png", root / "test" / "a" / "copy.png")
    code, out = check(capsys, "-c", "digits", "data.dataset=folder", f"data.root={root}",
                      "--workers", "0")
    assert code == 1
    assert "unreadable files (2):" in out
    assert all(f"cannot read image {p}" in out for p in broken)
    assert f"train: class 'c' has no items ({root / 'train'}/c)" in out
    assert f"test: class 'c' has no items ({root / 'test'}/c)" in out
    assert f"{root / 'test' / 'a' / 'copy.png'} (test) = {root / 'train' / 'b' / '1.png'} " \
           f"(train)" in out
    assert "5 problems: 2 unreadable files, 2 classes without items, 1 files in both" in out


def test_voc_every_listed_id_without_a_photo_and_every_bad_mask_is_named(tmp_path, capsys):
    write_voc(tmp_path)
    lists = tmp_path / VOC_DIR / "ImageSets" / "Segmentation"
    (lists / "gappy.txt").write_text("2007_000001\n2009_000001\n2007_000002\n2009_000002\n")
    mask = set_mask(tmp_path, "2007_000002", 21)
    code, out = check(capsys, "-c", "voc_seg", f"data.root={tmp_path}", "data.img_size=16",
                      "data.train_split=gappy", "data.val_split=mini_val", "--workers", "0")
    assert code == 1
    photos = tmp_path / VOC_DIR / "JPEGImages"
    assert "missing files (2):" in out  # all of them, not only the first
    for id_ in ("2009_000001", "2009_000002"):
        assert f"gappy: {photos / id_}.jpg: no such file" in out
    for split in ("gappy", "mini_val"):  # 2007_000002 is in both lists
        assert f"{split}: {mask}: mask values 21 are outside the classes 0..20" in out
    assert "split 'gappy': 4 items, 1 read without error, 21 classes" in out
    assert "files in both splits (same content) (1):" in out


def test_seg_folder_bad_mask_is_named(tmp_path, capsys):
    write_split(tmp_path, "train", palette=True)
    write_split(tmp_path, "test", palette=False, top=4)
    code, out = check(capsys, "-c", "voc_seg", "data.dataset=seg_folder",
                      f"data.root={tmp_path}", "data.img_size=16", "data.train_split=train",
                      "data.val_split=test", "--workers", "0")
    assert code == 1
    assert f"test: {tmp_path / 'test' / 'masks' / 'c.png'}: mask values 3 are outside the " \
           f"classes 0..2" in out
    assert "items with each class in their mask: 0 3, 1 1, 2 2" in out


@pytest.mark.data
def test_real_voc_lists_every_listed_id_without_a_photo():
    root = os.environ.get("VITMAE_DATA")
    if not root or not (Path(root) / VOC_DIR).is_dir():
        pytest.skip("VITMAE_DATA not set, or no VOCdevkit/VOC2012 under it")
    cfg = load_config("voc_seg", [f"data.root={root}", "data.train_split=train",
                                  "data.val_split=val"])
    splits, problems = check_data(cfg, workers=2)
    voc = Path(root) / VOC_DIR
    for s in splits:
        ids = (voc / "ImageSets" / "Segmentation" / f"{s.split}.txt").read_text().split()
        absent = [i for i in ids if not (voc / "JPEGImages" / f"{i}.jpg").is_file()]
        named = [p for p in problems["MissingFileError"] if p.startswith(f"{s.split}: ")]
        assert named == [f"{s.split}: {voc / 'JPEGImages' / i}.jpg: no such file"
                         for i in absent]
        assert len(s.items) == len(ids)
    assert set(problems) == {"MissingFileError"}

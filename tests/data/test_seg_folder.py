"""seg_folder: photos and index or palette masks paired by name, on tiny generated folders;
every bad input is refused naming the file."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitmae.config import DataConfig
from vitmae.data import build_dataset
from vitmae.data.checks import BadImageError, BadMaskError
from vitmae.data.palette import save_palette_png

SIZES = {"a": (10, 12), "b": (9, 9), "c": (12, 7)}  # (H, W)


def mask_of(H: int, W: int, k: int) -> np.ndarray:
    """Background, a square of class k, a void border column."""
    m = np.zeros((H, W), np.uint8)
    m[2:6, 2:6] = k
    m[:, 0] = 255
    return m


def write_split(root: Path, split: str, palette: bool, top: int = 2) -> dict[str, np.ndarray]:
    """<root>/<split>/images/*.jpg|png and masks/*.png; mask n holds class min(n + 1, top)."""
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    masks = {}
    for n, (name, (H, W)) in enumerate(SIZES.items()):
        photo = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        photo.save(root / split / "images" / f"{name}{'.png' if n % 2 else '.jpg'}")
        masks[name] = mask_of(H, W, min(n + 1, top))
        write_mask(root / split / "masks" / f"{name}.png", masks[name], palette)
    return masks


def write_mask(path: Path, mask: np.ndarray, palette: bool) -> None:
    if palette:
        save_palette_png(torch.from_numpy(mask), path)
    else:
        Image.fromarray(mask, mode="L").save(path)


def cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(dataset="seg_folder", root=str(root), img_size=16, **kw)


@pytest.mark.parametrize("palette", [True, False])
def test_items_classes_and_names(tmp_path, palette):
    masks = write_split(tmp_path, "train", palette)
    write_split(tmp_path, "test", palette)
    train = build_dataset(cfg(tmp_path), "train", True)
    assert (len(train), train.num_classes, train.in_chans) == (3, 3, 3)  # 0..2 from the masks
    assert train.classes == ["0", "1", "2"] and train.ids == ["a", "b", "c"]
    for i in range(3):
        img, mask = train[i]
        assert img.shape == (3, 16, 16) and mask.shape == (16, 16) and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= {0, 1, 2, 255}
    test = build_dataset(cfg(tmp_path), "test", False)
    assert test.pad_to == (12, 12)
    for i, (name, (H, W)) in enumerate(SIZES.items()):
        img, mask, size = test[i]
        assert img.shape == (3, 16, 16) and size.tolist() == [H, W]
        assert torch.equal(mask[:H, :W], torch.from_numpy(masks[name]).long())
        assert (mask[H:] == 255).all() and (mask[:, W:] == 255).all()


def test_classes_txt_names_the_classes(tmp_path):
    write_split(tmp_path, "train", palette=True)
    (tmp_path / "classes.txt").write_text("sky\nroad\ncar\n\ntree\n")
    ds = build_dataset(cfg(tmp_path), "train", True)
    assert ds.classes == ["sky", "road", "car", "tree"] and ds.num_classes == 4


def test_a_mask_class_out_of_range_is_named(tmp_path):
    write_split(tmp_path, "train", palette=False)
    write_split(tmp_path, "test", palette=False, top=3)  # class 3: not in the train masks
    ds = build_dataset(cfg(tmp_path), "test", False)
    with pytest.raises(BadMaskError, match=r"mask values 3 are outside the classes 0\.\.2") \
            as e:
        ds[2]
    assert str(tmp_path / "test" / "masks" / "c.png") in str(e.value)
    (tmp_path / "classes.txt").write_text("x\ny\n")
    with pytest.raises(BadMaskError, match=r"mask values 2 are outside the classes 0\.\.1"):
        build_dataset(cfg(tmp_path), "train", True)[1]


def test_a_mask_whose_size_differs_from_its_image_is_named(tmp_path):
    write_split(tmp_path, "train", palette=True)
    path = tmp_path / "train" / "masks" / "b.png"
    write_mask(path, mask_of(9, 8, 1), palette=True)
    with pytest.raises(BadMaskError, match=rf"{path}: mask \(9, 8\) and photo .*b\.png "
                                           rf"\(9, 9\) differ in size"):
        build_dataset(cfg(tmp_path), "train", True)[1]


def test_a_colour_mask_is_refused_naming_it(tmp_path):
    write_split(tmp_path, "train", palette=True)
    path = tmp_path / "train" / "masks" / "a.png"
    Image.new("RGB", (12, 10), (128, 0, 0)).save(path)
    with pytest.raises(BadMaskError, match=rf"{path}: a mask must be a palette \(P\) or grey"):
        build_dataset(cfg(tmp_path), "train", True)[0]


def test_an_unreadable_image_is_named_and_skipped_with_skip_bad(tmp_path):
    write_split(tmp_path, "train", palette=True)
    path = tmp_path / "train" / "images" / "b.png"
    path.write_bytes(b"not a png")
    with pytest.raises(BadImageError, match=f"cannot read image {path}"):
        build_dataset(cfg(tmp_path), "train", True)[1]
    ds = build_dataset(cfg(tmp_path, skip_bad=True), "train", True)
    assert all(ds[i][0].shape == (3, 16, 16) for i in range(3)) and ds.bad_files == [str(path)]


def test_empty_or_missing_folders_and_photos_without_masks_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train" / "images")):
        build_dataset(cfg(tmp_path), "train", True)
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'train' / 'images'}: no photos"):
        build_dataset(cfg(tmp_path), "train", True)
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "images" / "lone.jpg")
    with pytest.raises(FileNotFoundError, match=r"1 of 1 photos .* have no mask .*lone\.png"):
        build_dataset(cfg(tmp_path), "train", True)


def test_finetune_and_evaluate_through_the_cli_name_predictions_by_file(tmp_path):
    from cli.test_cli import run_cli

    root = tmp_path / "data"
    write_split(root, "train", palette=True)
    write_split(root, "test", palette=False)
    args = ["-c", "seg_folder", "model.arch=vit_micro_patch4", "model.seg_head=linear",
            f"data.root={root}", "data.img_size=16", "data.batch_size=3", "data.num_workers=0",
            "finetune.optim.epochs=1", "run.threads=1", f"run.output_dir={tmp_path}", "run.name=r"]
    run_cli(["finetune", *args])
    run_cli(["evaluate", "--checkpoint", str(tmp_path / "r"), "--save-predictions",
             str(tmp_path / "pred")])
    for name, (H, W) in SIZES.items():
        with Image.open(tmp_path / "pred" / f"{name}.png") as im:
            assert im.size == (W, H) and im.mode == "P"


@pytest.mark.parametrize("mode", ["1", "I;16"])
def test_one_bit_and_16_bit_index_masks_are_read_and_checked(tmp_path, mode):
    write_split(tmp_path, "train", palette=True)
    path = tmp_path / "train" / "masks" / "b.png"
    values = np.zeros((9, 9), np.uint16)
    values[2:5, 2:5] = 1
    Image.fromarray(values.astype(bool) if mode == "1" else values).save(path)
    assert Image.open(path).mode == mode
    ds = build_dataset(cfg(tmp_path), "train", False)
    assert torch.equal(ds[1][1][:9, :9], torch.from_numpy(values).long())
    if mode == "I;16":
        values[0, 0] = 300
        Image.fromarray(values).save(path)
        with pytest.raises(BadMaskError, match=f"{path}: mask values 300 are outside"):
            ds[1]

"""PASCAL VOC loaders on a tiny VOC-layout folder written by the test, and on the real copy
under $VITMAE_DATA when it is set."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitmae.config import DataConfig
from vitmae.data import build_dataset
from vitmae.data.checks import BadImageError, BadLabelError, BadMaskError, MissingFileError
from vitmae.data.palette import save_palette_png, voc_palette
from vitmae.data.registry import build_plain
from vitmae.data.voc import CLASSES, VOC_DIR, read_image, read_mask

SIZES = {"2007_000001": (30, 40), "2007_000002": (36, 28), "2007_000003": (24, 24),
         "2007_000004": (32, 36)}
XML = {"2007_000002": ["dog", "person", "dog"]}  # classes 12 and 15; the mask says otherwise


def write_voc(root: Path) -> dict[str, np.ndarray]:
    """VOCdevkit/VOC2012 with 4 photos, palette masks (255 borders), one XML, three lists."""
    voc = root / VOC_DIR
    for sub in ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    masks = {}
    for n, (id_, (H, W)) in enumerate(SIZES.items()):
        mask = np.zeros((H, W), np.uint8)
        mask[H // 4: 3 * H // 4, W // 4: 3 * W // 4] = n + 1  # one object, class n + 1
        mask[H // 4 - 1, W // 4: 3 * W // 4] = 255  # a void band on its top edge
        mask[:, :2] = 255
        save_palette_png(torch.from_numpy(mask), voc / "SegmentationClass" / f"{id_}.png")
        photo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(photo).save(voc / "JPEGImages" / f"{id_}.jpg", quality=95)
        masks[id_] = mask
    for id_, names in XML.items():
        objects = "".join(f"<object><name>{c}</name><difficult>0</difficult></object>"
                          for c in names)
        (voc / "Annotations" / f"{id_}.xml").write_text(
            f"<annotation><filename>{id_}.jpg</filename>{objects}</annotation>")
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "mini_train.txt").write_text("2007_000001\n2007_000002\n2007_000003\n")
    (lists / "mini_val.txt").write_text("2007_000002\n2007_000004\n")
    (lists / "with_missing.txt").write_text("2007_000001\n2008_999999\n2007_000004\n")
    return masks


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    return root, write_voc(root)


def cfg(root, dataset="voc_seg") -> DataConfig:
    return DataConfig(dataset=dataset, root=str(root), img_size=16)


def test_palette_png_round_trip_and_colours(tmp_path):
    mask = torch.tensor([[0, 1, 15], [20, 255, 7]])
    save_palette_png(mask, tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "P"
    assert torch.equal(read_mask(tmp_path / "m.png").long(), mask)
    pal = voc_palette()
    assert pal[1].tolist() == [128, 0, 0] and pal[15].tolist() == [192, 128, 128]
    assert pal[255].tolist() == [224, 224, 192]  # void: VOC's cream border colour


def test_read_image_gives_pillows_rgb_pixels_for_any_photo(tmp_path):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "rgb.jpg", quality=90)
    Image.fromarray(photo[..., 0]).save(tmp_path / "grey.jpg", quality=90)
    Image.fromarray(photo).save(tmp_path / "png_named.jpg", format="PNG")  # not a JPEG inside
    for name in ("rgb.jpg", "grey.jpg", "png_named.jpg"):
        img = read_image(tmp_path / name)
        with Image.open(tmp_path / name) as im:
            want = torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)
        assert img.shape == (3, 20, 30) and img.dtype == torch.uint8, name
        assert torch.equal(img, want), name
    lossless = read_image(tmp_path / "png_named.jpg")
    assert torch.equal(lossless, torch.from_numpy(photo).permute(2, 0, 1))


def test_a_truncated_photo_raises_naming_it(tmp_path):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="cut.jpg"):
        read_image(tmp_path / "cut.jpg")


def test_segmentation_training_items(voc_root):
    root, _ = voc_root
    ds = build_dataset(cfg(root), "mini_train", True)
    assert (len(ds), ds.num_classes, ds.in_chans, ds.classes[15]) == (3, 21, 3, "person")
    for i in range(len(ds)):
        img, mask = ds[i]
        assert img.shape == (3, 16, 16) and img.dtype == torch.float32
        assert mask.shape == (16, 16) and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= {0, 1, 2, 3, 255}


def test_segmentation_eval_items_keep_the_original_mask(voc_root):
    root, masks = voc_root
    ds = build_dataset(cfg(root), "mini_val", False)
    assert ds.pad_to == (36, 36)  # the largest height and width of the list's masks
    for i, id_ in enumerate(["2007_000002", "2007_000004"]):
        img, mask, size = ds[i]
        H, W = SIZES[id_]
        assert img.shape == (3, 16, 16) and size.tolist() == [H, W]
        assert torch.equal(mask[:H, :W], torch.from_numpy(masks[id_]).long())
        assert (mask[H:] == 255).all() and (mask[:, W:] == 255).all()


def test_multilabel_targets_from_xml_else_mask(voc_root):
    root, _ = voc_root
    ds = build_dataset(cfg(root, "voc_cls"), "mini_train", False)
    assert ds.num_classes == 20 and ds.classes[0] == "aeroplane"
    targets = [ds[i][1] for i in range(3)]
    assert targets[0].nonzero().flatten().tolist() == [0]  # mask: class 1 (void ignored)
    assert targets[1].nonzero().flatten().tolist() == [11, 14]  # XML: dog, person
    assert targets[2].nonzero().flatten().tolist() == [2]
    assert ds[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize("dataset", ["voc_seg", "voc_cls"])
def test_missing_images_fail_at_start_naming_them(voc_root, dataset):
    root, _ = voc_root
    with pytest.raises(FileNotFoundError, match=r"1 of 3 listed images .* 2008_999999"):
        build_dataset(cfg(root, dataset), "with_missing", True)
    with pytest.raises(FileNotFoundError, match="mini_train, mini_val, with_missing"):
        build_dataset(cfg(root, dataset), "nonexistent", True)


def set_mask(root: Path, id_: str, value: int) -> Path:
    """Paint `value` into the top-left corner of the mask of `id_`; -> its path."""
    path = root / VOC_DIR / "SegmentationClass" / f"{id_}.png"
    mask = read_mask(path).clone()
    mask[:3, :3] = value
    save_palette_png(mask, path)
    return path


@pytest.mark.parametrize("train, split, i", [(True, "mini_train", 1), (False, "mini_val", 0)])
def test_a_mask_value_that_is_no_class_is_refused_naming_the_mask(tmp_path, train, split, i):
    write_voc(tmp_path)
    path = set_mask(tmp_path, "2007_000002", 21)  # the common off-by-one of home-made masks
    ds = build_dataset(cfg(tmp_path), split, train)
    with pytest.raises(BadMaskError, match=r"mask values 21 are outside the classes 0\.\.20") \
            as e:
        ds[i]
    assert str(path) in str(e.value) and "data.skip_bad=true" in str(e.value)


def test_multilabel_targets_from_a_bad_mask_or_xml_are_refused_naming_the_file(tmp_path):
    write_voc(tmp_path)
    path = set_mask(tmp_path, "2007_000001", 40)  # no XML: labels come from the mask
    ds = build_dataset(cfg(tmp_path, "voc_cls"), "mini_train", False)
    with pytest.raises(BadMaskError, match="mask values 40") as e:
        ds[0]
    assert str(path) in str(e.value)
    xml = tmp_path / VOC_DIR / "Annotations" / "2007_000002.xml"
    xml.write_text("<annotation><object><name>unicorn</name></object></annotation>")
    with pytest.raises(BadLabelError, match=r"unknown VOC class names \['unicorn'\]"):
        ds[1]
    xml.write_text("<annotation><object>")
    with pytest.raises(BadLabelError, match=f"{xml}: not a readable VOC annotation"):
        ds[1]


def test_a_mask_whose_size_differs_from_its_photo_is_named(tmp_path):
    write_voc(tmp_path)
    path = tmp_path / VOC_DIR / "SegmentationClass" / "2007_000003.png"
    save_palette_png(torch.zeros(24, 23, dtype=torch.long), path)
    ds = build_dataset(cfg(tmp_path), "mini_train", True)
    with pytest.raises(BadMaskError, match=r"mask \(24, 23\) and photo .* \(24, 24\) differ"):
        ds[2]


def test_skip_bad_skips_a_truncated_photo_or_a_bad_mask(tmp_path):
    write_voc(tmp_path)
    photo = tmp_path / VOC_DIR / "JPEGImages" / "2007_000002.jpg"
    photo.write_bytes(photo.read_bytes()[:200])
    with pytest.raises(BadImageError, match="2007_000002.jpg"):
        build_dataset(cfg(tmp_path), "mini_val", False)[0]
    ds = build_dataset(DataConfig(dataset="voc_seg", root=str(tmp_path), img_size=16,
                                  skip_bad=True), "mini_val", False)
    assert all(torch.equal(a, b) for a, b in zip(ds[0], ds[1], strict=True))  # the next item
    mask = set_mask(tmp_path, "2007_000003", 99)
    train = build_dataset(DataConfig(dataset="voc_seg", root=str(tmp_path), img_size=16,
                                     skip_bad=True), "mini_train", True)
    assert all(train[i][1].shape == (16, 16) for i in range(3))
    assert train.bad_files == [str(photo), str(mask)]


def test_skip_bad_lets_listed_ids_without_a_photo_be_skipped(tmp_path):
    write_voc(tmp_path)
    ds = build_dataset(DataConfig(dataset="voc_seg", root=str(tmp_path), img_size=16,
                                  skip_bad=True), "with_missing", False)
    assert len(ds) == 3 and ds[1][2].tolist() == list(SIZES["2007_000004"])
    (path, reason), = ds.take_skipped()
    assert path == str(tmp_path / VOC_DIR / "JPEGImages" / "2008_999999.jpg")
    assert "no such file" in reason
    with pytest.raises(MissingFileError, match="2008_999999.jpg: no such file"):
        build_plain(DataConfig(dataset="voc_seg", root=str(tmp_path), img_size=16,
                               skip_bad=True), "with_missing", False)[1]  # as check-data sees


@pytest.mark.data
def test_real_voc_available_lists():
    root = os.environ.get("VITMAE_DATA")
    if not root or not (Path(root) / VOC_DIR).is_dir():
        pytest.skip("VITMAE_DATA not set, or no VOCdevkit/VOC2012 under it")
    val = build_dataset(DataConfig(dataset="voc_seg", root=root, img_size=64), "val_available",
                        False)
    assert len(val) == 346 and max(val.pad_to) <= 500
    img, mask, (H, W) = val[0]
    assert img.shape == (3, 64, 64) and set(mask[:H, :W].unique().tolist()) <= \
        set(range(21)) | {255}
    train = build_dataset(DataConfig(dataset="voc_seg", root=root, img_size=64),
                          "train_available", True)
    assert len(train) == 333 and train[0][1].shape == (64, 64)
    cls = build_dataset(DataConfig(dataset="voc_cls", root=root, img_size=64), "val_available",
                        False)
    assert cls.classes == CLASSES[1:] and cls[0][1].sum() >= 1


class _Items(torch.utils.data.Dataset):
    """Item i: a 3x4 image and mask both filled with class i % 3, named 'img<i>'."""

    def __init__(self, n: int):
        self.ids = [f"img{i}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        return torch.full((1, 3, 4), float(i % 3)), torch.full((3, 4), i % 3)


class _ReadsTheClass(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, 3, H, W)
        return torch.nn.functional.one_hot(x[:, 0].long(), 3).permute(0, 3, 1, 2).float()


def test_the_evaluator_pass_writes_each_prediction_under_its_own_name(tmp_path):
    from vitmae.data.loader import make_loader
    from vitmae.tasks import build_task
    from vitmae.train.engine import run_evaluator
    from vitmae.viz.segmentation import palette_writer

    ds, task = _Items(7), build_task("segment", num_classes=3)
    order = make_loader(ds, 3, train=False).sampler  # batches of 3, the last one partial
    ev = task.evaluator(sink=palette_writer(ds, tmp_path, order))
    ev = run_evaluator(_ReadsTheClass(), task, ds, 3, torch.device("cpu"), evaluator=ev)
    assert sorted(p.stem for p in tmp_path.iterdir()) == sorted(ds.ids)
    for i, name in enumerate(ds.ids):
        assert read_mask(tmp_path / f"{name}.png").unique().tolist() == [i % 3]
    assert ev.result()["pixel_acc"] == 1.0 and ev.result()["n"] == 7

"""The pictures of `vitmae robustness`: the severity figure has a panel per kind of
measurement and its mean line is the summary's; example titles carry the prediction and
whether it is right; the example columns of a segmentation and a multi-label set (tiny VOC,
untrained 1x1 models) are the truth, clean, corrupted and attacked, and decode as PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from data.test_voc import write_voc
from PIL import Image

from vitmae.config import DataConfig
from vitmae.data import build_dataset
from vitmae.robust.corruptions import GROUPS
from vitmae.robust.evaluation import Options, summarize
from vitmae.robust.figures import (
    example_columns,
    save_robustness_figures,
    shown_corruptions,
    strongest_attack,
)
from vitmae.viz.robustness import examples_figure, prediction_title, severity_figure

CLEAN = {"kind": "clean", "top1": 0.9, "n": 40, "seconds": 0.1}


def records(corruptions=("gaussian_noise", "fog"), severities=(1, 3), attacks=("pgd",),
            eps=(2 / 255, 8 / 255)) -> list[dict]:
    out = [dict(CLEAN)]
    for i, name in enumerate(corruptions):
        out += [{"kind": "corruption", "corruption": name, "severity": s,
                 "top1": 0.9 - 0.1 * s - 0.05 * i, "n": 40, "seconds": 0.1} for s in severities]
    for name in attacks:
        out += [{"kind": "attack", "attack": name, "eps": e, "top1": 0.8 - 10 * e, "n": 40,
                 "seconds": 0.1} for e in eps]
    return out


def test_severity_figure_has_a_panel_per_kind_and_the_summarys_mean():
    recs = records()
    fig = severity_figure(recs, "top1", GROUPS)
    assert [ax.get_title() for ax in fig.axes] == ["common corruptions", "L-inf attacks"]
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert set(lines) == {"gaussian_noise", "fog", "mean", "clean"}
    summary = summarize(recs, "top1", Options())
    assert list(lines["mean"].get_xdata()) == [1, 3]
    assert list(lines["mean"].get_ydata()) == pytest.approx(list(summary["by_severity"].values()))
    assert lines["clean"].get_ydata()[0] == 0.9
    assert lines["gaussian_noise"].get_color() != lines["fog"].get_color()  # noise, weather
    pgd = next(x for x in fig.axes[1].get_lines() if x.get_label() == "pgd")
    assert list(pgd.get_xdata()) == pytest.approx([2, 8])  # in /255
    assert [ax.get_title() for ax in severity_figure(records(attacks=()), "top1", GROUPS).axes] == \
        ["common corruptions"]
    attacks_only = severity_figure(records(corruptions=()), "top1", GROUPS)
    assert [ax.get_title() for ax in attacks_only.axes] == ["L-inf attacks"]
    assert len(severity_figure([dict(CLEAN)], "top1", GROUPS).axes) == 1


def test_prediction_titles_say_what_was_predicted_and_whether_it_is_right():
    cls = ["cat", "dog"]
    assert prediction_title("classify", torch.tensor(1), torch.tensor(1), cls) == \
        ("dog \u2713", True)
    assert prediction_title("classify", torch.tensor(0), torch.tensor(1), cls) == \
        ("cat \u2717 (true dog)", False)
    assert prediction_title("classify", torch.tensor(3), torch.tensor(3)) == ("3 \u2713", True)
    scores, truth = torch.tensor([0.9, 0.2, 0.7]), torch.tensor([1, 0, 1])
    abc = ["a", "b", "c"]
    assert prediction_title("multilabel", scores, truth, abc) == ("a, c \u2713", True)
    assert prediction_title("multilabel", scores, torch.tensor([1, 0, 0]), abc) == \
        ("a, c \u2717", False)
    assert prediction_title("multilabel", torch.zeros(3), truth, abc)[0] == "none \u2717"
    assert prediction_title("multilabel", torch.ones(5), torch.ones(5))[0] == "0, 1, 2 +2 \u2713"
    pred, truth = torch.tensor([[1, 1], [0, 2]]), torch.tensor([[1, 255], [0, 0]])
    assert prediction_title("segment", pred, truth) == ("67% of pixels right", None)


def test_shown_corruptions_and_the_strongest_attack():
    recs = records(corruptions=("shot_noise", "fog", "snow", "frost", "contrast"),
                   severities=(1, 2, 4), attacks=("fgsm", "pgd", "apgd"))
    assert shown_corruptions(recs) == [("fog", 2), ("contrast", 2), ("shot_noise", 2),
                                       ("snow", 2)]  # the preferred first; severity nearest 3
    assert strongest_attack(recs) == ("pgd", 8 / 255)
    assert strongest_attack(records(attacks=("fgsm",), eps=(0, 2 / 255))) == ("fgsm", 2 / 255)
    assert strongest_attack(records(eps=(0,))) is None and shown_corruptions([CLEAN]) == []


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    write_voc(root)
    return root


def voc_set(root, dataset: str):
    cfg = DataConfig(dataset=dataset, root=str(root), img_size=16, val_split="mini_val")
    return build_dataset(cfg, "mini_val", train=False)


def decoded(path) -> tuple[int, int]:
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        im.load()
        assert im.format == "PNG"
        return im.size


def test_segmentation_examples_show_truth_clean_corrupted_and_attacked(voc, tmp_path):
    full = voc_set(voc, "voc_seg")
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, full.num_classes, 1).eval()  # (B, 3, H, W) -> (B, K, H, W)
    recs = [{**r, "miou": r["top1"]} for r in
            records(corruptions=("fog",), severities=(3,), attacks=("segpgd",))]
    columns = example_columns(model, "segment", full, full, recs, torch.device("cpu"), seed=0,
                              steps=2)
    assert list(columns) == ["ground truth", "clean", "fog s3", "segpgd 8/255"]
    for panels in columns.values():
        assert len(panels) == len(full) == 2
        for picture, _, _ in panels:
            assert picture.shape == (3, 16, 16) and 0 <= picture.min() <= picture.max() <= 1
    assert all(title.endswith("of pixels right") for _, title, _ in columns["clean"])
    assert not columns["clean"][0][0].equal(columns["fog s3"][0][0])
    fig = examples_figure(columns)
    assert len(fig.axes) == 2 * 4
    paths = save_robustness_figures(tmp_path, recs, "miou", model, "segment", full, full,
                                    torch.device("cpu"), seed=0, steps=2)
    assert [p.name for p in paths] == ["severity.png", "examples.png"]
    sizes = [decoded(p) for p in paths]
    assert sizes[1][0] > 4 * 100 and sizes[1][1] > 2 * 100  # 4 columns, 2 rows


def test_multilabel_examples_are_titled_with_the_labels_above_one_half(voc):
    full = voc_set(voc, "voc_cls")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16,
                                                                     full.num_classes)).eval()
    dog = full.classes.index("dog")
    with torch.no_grad():
        model[1].bias.fill_(-10)
        model[1].bias[dog] = 10  # always "dog" alone
    recs = records(corruptions=("contrast",), severities=(5,), attacks=("fgsm",), eps=(8 / 255,))
    columns = example_columns(model, "multilabel", full, full, recs, torch.device("cpu"),
                              seed=0, steps=2)
    assert list(columns) == ["clean", "contrast s5", "fgsm 8/255"]
    truth = [full[i][1] for i in range(len(full))]
    for (_, title, right), y in zip(columns["clean"], truth, strict=True):
        assert title.startswith("dog ") and right == bool(np.array_equal(
            np.flatnonzero(np.asarray(y)), [dog]))

"""`vitmae robustness`: corrupted test sets corrupt the stored image before the run's own
transform and leave the caller's set alone; on a trained classifier the metric falls with
severity and under attack, eps = 0 gives the clean figure, and the records, summary, table
and JSON line agree with each other; the two pictures are written beside the records."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vitmae.cli import main
from vitmae.config import load_config
from vitmae.data import build_dataset
from vitmae.errors import UsageError
from vitmae.robust.attacked import seg_targets
from vitmae.robust.corrupted import CorruptedSet, transform_owner
from vitmae.robust.corruptions import corrupt
from vitmae.robust.evaluation import Options, fixed_subset, summarize
from vitmae.viz.report import robustness_rows

# one 16 px patch per image: the micro ViT learns the digits in a few epochs (clean ~0.85)
TRAIN = ["-c", "digits", "model.arch=vit_micro_patch4", "model.patch_size=16",
         "model.drop_path=0", "data.batch_size=32", "finetune.optim.epochs=5",
         "finetune.optim.blr=5e-3", "finetune.optim.warmup_epochs=1", "run.threads=1"]


@pytest.fixture(scope="module")
def digits_test():
    return build_dataset(load_config("digits", []).data, "test", train=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("robust")
    assert main(["finetune", *TRAIN, f"run.output_dir={out}", "run.name=ft"]) == 0
    return out / "ft"


def test_corruption_comes_before_the_runs_transform(digits_test):
    before = digits_test[7][0].clone()
    cs = CorruptedSet(digits_test, "gaussian_noise", 3, seed=1)
    owner, attr = transform_owner(digits_test)  # the caller's own set: unchanged
    assert digits_test[7][0].equal(before) and getattr(owner, attr) is cs.transform
    raw = owner.images[7]  # (1, 8, 8) uint8 at its stored size
    want = getattr(owner, attr)(corrupt(raw[None], "gaussian_noise", 3, 1, indices=[7])[0])
    assert cs[7][0].equal(want) and cs[7][1] == digits_test[7][1]
    assert not cs[7][0].equal(before)
    # the draw depends on the item's index, not on what was read before it
    first = cs[7][0]
    cs[3], cs[11]
    assert cs[7][0].equal(first)
    assert not CorruptedSet(digits_test, "gaussian_noise", 3, seed=2)[7][0].equal(first)


def test_a_set_without_an_image_transform_is_refused():
    with pytest.raises(UsageError, match="no image transform"):
        CorruptedSet([(torch.zeros(1, 8, 8), 0)], "fog", 1)


def test_subset_is_class_balanced_and_fixed(digits_test):
    sub = fixed_subset(digits_test, 100, seed=0)
    labels = torch.tensor([sub[i][1] for i in range(len(sub))])
    assert len(sub) == 100 and torch.bincount(labels, minlength=10).min() >= 9
    assert sub.indices == fixed_subset(digits_test, 100, seed=0).indices


def test_metric_falls_with_severity_and_attack_and_records_agree(trained, digits_test, capsys):
    capsys.readouterr()
    code = main(["robustness", "--checkpoint", str(trained), "--corruptions",
                 "gaussian_noise,contrast", "--severities", "1,5", "--attacks", "fgsm,pgd",
                 "--eps", "0,8", "--steps", "20", "--subset", "200"])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    summary = json.loads(out[-1])
    clean = summary["clean"]
    assert summary["n"] == len(fixed_subset(digits_test, 200, 0))  # class-balanced: 199
    assert clean > 0.5, clean  # a classifier that learnt something
    assert summary["by_severity"]["5"] < summary["by_severity"]["1"] <= clean + 0.02
    assert summary["by_corruption"]["contrast"] < clean
    for attack in ("fgsm", "pgd"):
        assert summary[f"{attack}_0/255"] == clean  # no radius, no change
        assert summary[f"{attack}_8/255"] < clean - 0.1
    assert summary["pgd_8/255"] <= summary["fgsm_8/255"]
    records = [json.loads(x) for x in
               (trained / "robustness" / "records.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["clean"] + ["corruption"] * 4 + ["attack"] * 4
    opts = Options(**{k: summary[k] for k in ("corruptions", "severities", "attacks", "eps",
                                              "steps", "subset", "seed")})
    assert json.loads(json.dumps(summarize(records, "top1", opts))) == summary
    assert any(line.startswith("contrast") for line in out)  # the table
    for name in ("severity.png", "examples.png"):  # the pictures, beside the records
        assert f"wrote {trained / 'robustness' / name}" in out
        with Image.open(trained / "robustness" / name) as im:
            assert im.format == "PNG" and min(im.size) >= 300


def test_attack_at_the_stored_size_is_recorded_and_weaker(trained, capsys):
    """The digits are stored at 8 px and read at 16: PGD on the 8 px grid, at eps 0 the
    clean figure, at 8/255 below it and no stronger than PGD on the 16 px input."""
    capsys.readouterr()
    runs = {}
    for size in ([], ["--attack-size", "8"]):
        code = main(["robustness", "--checkpoint", str(trained), "--corruptions", "none",
                     "--attacks", "pgd", "--eps", "0,8", "--subset", "200", *size])
        runs[bool(size)] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert code == 0
    grid, pixels = runs[True], runs[False]
    assert grid["attack_size"] == 8 and pixels["attack_size"] is None
    records = [json.loads(x) for x in
               (trained / "robustness" / "records.jsonl").read_text().splitlines()]
    assert [r.get("size") for r in records if r["kind"] == "attack"] == [8, 8]
    assert ("pgd, eps 8/255, at 8 px", grid["pgd_8/255"]) in robustness_rows(grid)
    assert grid["pgd_0/255"] == grid["clean"] == pixels["clean"]
    assert pixels["pgd_8/255"] <= grid["pgd_8/255"] < grid["clean"]


def test_unknown_attack_and_bad_numbers_are_named(trained, capsys):
    for flags, named in ((["--attacks", "segpgd"], "'segpgd' is not an attack of task "
                          "classify"), (["--eps", "eight"], "--eps take comma-separated"),
                         (["--attack-size", "99"], "--attack-size: a size in pixels")):
        capsys.readouterr()
        code = main(["robustness", "--checkpoint", str(trained), "--corruptions", "none",
                     "--subset", "20", *flags])
        assert code != 0 and named in capsys.readouterr().err


def test_segmentation_targets_of_padded_and_of_plain_batches():
    masks = torch.randint(0, 11, (2, 8, 8))
    assert seg_targets([torch.zeros(2, 1, 8, 8), masks], (8, 8)).equal(masks)  # MNIST seg
    padded = torch.full((2, 10, 12), 255)
    padded[:, :8, :8] = masks
    sizes = torch.tensor([[8, 8], [8, 8]])
    assert seg_targets([torch.zeros(2, 3, 16, 16), padded, sizes], (8, 8)).equal(masks)
    assert seg_targets([None, padded, sizes], (16, 16))[:, ::2, ::2].equal(masks)  # nearest

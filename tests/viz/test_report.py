"""`vitmae report`: the HTML page of a tiny pretrain -> fine-tune -> evaluate chain, and of
a copy of its fine-tuned run measured by `vitmae robustness`."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil

import pytest
import torch
from PIL import Image

from vitmae.cli import main
from vitmae.config import DataConfig, load_config
from vitmae.data import build_dataset
from vitmae.train.evaluation import run_evaluate
from vitmae.train.runner import run_finetune, run_pretrain
from vitmae.viz.report import SECTIONS, final_metrics, find_runs, load_run, write_report
from vitmae.viz.report_curves import curve_figures

SMALL = ["model.arch=vit_micro_patch4", "data.subset=128", "data.batch_size=64",
         "run.log_interval=1"]
IMG = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def quiet(*_):
    pass


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A demo-like folder: a 2-epoch MAE with the k-NN monitor, a 1-epoch fine-tuning from it
    and one from scratch, both evaluated."""
    root = tmp_path_factory.mktemp("chain")
    common = [*SMALL, f"run.output_dir={root}"]
    run_pretrain(load_config("digits", [*common, "pretrain.optim.epochs=2", "pretrain.knn_every=1",
                                        "run.name=pretrain"]), log=quiet)
    for name, source in (("finetune", str(root / "pretrain")), ("scratch", "null")):
        cfg = load_config("digits", [*common, "finetune.optim.epochs=1", f"run.name={name}",
                                     f"finetune.pretrained={source}"])
        run_evaluate(cfg, run_finetune(cfg, log=quiet), log=quiet)
    return root


def _sections(page: str) -> dict[str, str]:
    found = re.findall(r'<section id="(\w+)">(.*?)</section>', page, flags=re.S)
    return dict(found)


def test_report_has_every_section_and_every_picture_decodes(chain, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(chain), "--out", str(tmp_path / "r.html")]) == 0
    assert out.getvalue().strip() == f"wrote {tmp_path / 'r.html'}"
    page = (tmp_path / "r.html").read_text()
    sections = _sections(page)
    assert list(sections) == list(SECTIONS)
    counts = {}
    for key, body in sections.items():
        pictures = IMG.findall(body)
        counts[key] = len(pictures)
        for data in pictures:
            with Image.open(io.BytesIO(base64.b64decode(data))) as im:
                im.load()
                assert im.format == "PNG" and min(im.size) >= 100
    # curves: one figure per stage; grids of the start and epochs 1, 2; two evaluated runs
    assert counts == {"runs": 0, "metrics": 0, "curves": 2, "reconstructions": 3,
                      "confusion": 2, "segmentation": 0, "robustness": 0, "config": 0}
    assert "No segmentation picture" in sections["segmentation"]
    assert "No robustness records" in sections["robustness"]
    for name in ("pretrain", "finetune", "scratch"):
        assert f"<summary>{name}</summary>" in sections["config"]
    assert "vit_micro_patch4" in sections["config"]
    assert "knn_top1" in sections["metrics"] and "top1" in sections["metrics"]
    assert not re.search(r"<script|<link|https?://", page)  # opens offline


def test_final_metrics_sit_beside_the_trivial_baseline(chain):
    counts = torch.bincount(build_dataset(DataConfig(), "test", train=False).targets)
    majority = (counts.max() / counts.sum()).item()
    run = load_run(chain / "scratch", "scratch")
    assert run.evaluation["baseline_top1"] == pytest.approx(majority)
    pre = load_run(chain / "pretrain", "pretrain")
    rows = {key: (value, base) for _, key, value, base in final_metrics(pre)}
    assert rows["knn_top1"][1] == pytest.approx(majority)
    assert rows["val_loss"][1] is None


def test_runs_of_one_stage_share_a_figure_and_the_demo_order_is_kept(chain):
    assert [p.name for p in find_runs([chain])] == ["pretrain", "finetune", "scratch"]
    runs = [load_run(p, p.name) for p in find_runs([chain])]
    figures = curve_figures([(r.name, r.stage, r.records) for r in runs])
    assert [stage for stage, _ in figures] == ["pretrain", "finetune"]
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        find_runs([chain / "pretrain" / "recon"])


def test_default_output_is_in_the_first_folder(chain):
    assert write_report([chain / "scratch"]) == chain / "scratch" / "report.html"


def test_a_run_with_robustness_records_gets_its_table_and_pictures(chain, tmp_path):
    run = tmp_path / "ft"
    shutil.copytree(chain / "finetune", run)  # the chain's own runs keep no such records
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["robustness", "--checkpoint", str(run), "--corruptions", "gaussian_noise,fog",
                     "--severities", "1,3", "--attacks", "pgd", "--eps", "8", "--steps", "3",
                     "--subset", "40", "run.threads=1"]) == 0
        assert main(["report", str(run)]) == 0
    summary = json.loads(out.getvalue().splitlines()[-2])  # the last line: "wrote report.html"
    assert summary == json.loads((run / "robustness" / "summary.json").read_text())
    body = _sections((run / "report.html").read_text())["robustness"]
    assert "<h3>ft</h3>" in body and f"top1 on {summary['n']} items" in body
    rows = re.findall(r'<tr><td>([^<]*)</td><td class="num">([^<]*)</td></tr>', body)
    want = [("clean", summary["clean"]), ("corruptions, mean", summary["corruption_mean"]),
            ("corruptions, severity 1", summary["by_severity"]["1"]),
            ("corruptions, severity 3", summary["by_severity"]["3"]),
            ("pgd, eps 8/255", summary["pgd_8/255"])]
    assert rows == [(what, f"{value:.4f}") for what, value in want]
    pictures = IMG.findall(body)
    assert len(pictures) == 2
    sizes = []
    for data in pictures:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            im.load()
            assert im.format == "PNG"
            sizes.append(im.size)
    # severity: two panels side by side; examples: 4 rows of clean, 2 corruptions, pgd
    assert sizes[0][0] > 2 * sizes[0][1] and sizes[1][1] > 4 * 150 and sizes[1][0] > 4 * 150

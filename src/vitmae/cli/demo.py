"""`run_demo`: the whole main job in one call: pretrain -> fine-tune -> evaluate -> visualize
-> report.

On the built-in `digits` preset it runs offline in a few minutes on 2 CPU cores. The runs go
into one folder, `<output_dir>/<name or demo-<time>>/{pretrain,finetune}`, beside the MAE
reconstruction picture and the HTML report of both runs (`report.html`).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from vitmae.config import Config
from vitmae.train.evaluation import run_evaluate
from vitmae.train.runner import run_finetune, run_pretrain
from vitmae.viz.reconstruction import run_visualize
from vitmae.viz.report import write_report


def run_demo(cfg: Config, log=print) -> dict:
    """Returns the evaluation metrics (the JSON the CLI prints last)."""
    t0 = time.perf_counter()
    root = Path(cfg.run.output_dir) / (cfg.run.name or f"demo-{time.strftime('%Y%m%d-%H%M%S')}")
    pre = copy.deepcopy(cfg)
    pre.run.output_dir, pre.run.name = str(root), "pretrain"
    pre_dir = run_pretrain(pre, log=log)
    picture = run_visualize(pre, pre_dir, root / "reconstruction.png")
    log(f"MAE reconstructions: {picture}")
    fin = copy.deepcopy(cfg)
    fin.run.output_dir, fin.run.name = str(root), "finetune"
    fin.finetune.pretrained = str(pre_dir)
    fin_dir = run_finetune(fin, log=log)
    result = run_evaluate(fin, fin_dir, log=log)
    log(f"report: {write_report([pre_dir, fin_dir], root / 'report.html')}")
    log(f"demo finished in {time.perf_counter() - t0:.0f} s; runs in {root}")
    return result

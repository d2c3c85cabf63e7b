"""`run_evaluate`: a fine-tuned checkpoint on the test split, ending with one JSON line.

Classification also writes the confusion matrix as CSV and PNG into the run folder's `eval/`.
"""

from __future__ import annotations

import json
from pathlib import Path

from vitmae.config import Config
from vitmae.data import build_dataset
from vitmae.data.loader import make_loader
from vitmae.errors import UsageError
from vitmae.models import load_finetuned
from vitmae.runs.checkpoint import read_weights
from vitmae.runs.folder import run_dir_of
from vitmae.tasks import build_task
from vitmae.tasks.segment import volume_window
from vitmae.train.engine import run_evaluator
from vitmae.train.runner import setup
from vitmae.viz.figures import save_confusion
from vitmae.viz.segmentation import palette_writer
from vitmae.weights.keys import is_mae


def run_evaluate(cfg: Config, checkpoint: str | Path, out_dir: str | Path | None = None,
                 log=print, predictions_dir: str | Path | None = None) -> dict:
    """Metrics of `checkpoint` on cfg.data.val_split; writes eval artefacts to `out_dir`.

    predictions_dir (segmentation only): the same pass also writes every prediction there as
    a VOC palette PNG named after the image.
    """
    if predictions_dir is not None and cfg.task != "segment":
        raise UsageError(f"saving predictions needs a segmentation run (task: segment), "
                         f"this one has task: {cfg.task}")
    state = read_weights(checkpoint)
    if is_mae(state):
        raise UsageError(f"{checkpoint}: an MAE pretraining run has no {cfg.task} head to "
                         f"evaluate; fine-tune it first (vitmae finetune -c PRESET "
                         f"finetune.pretrained={checkpoint}), or read its encoder with vitmae "
                         f"embed, its k-NN accuracy with pretrain.knn_every, its "
                         f"reconstructions with vitmae visualize")
    device = setup(cfg)
    ds = build_dataset(cfg.data, cfg.data.val_split, train=False)
    model = load_finetuned(cfg, state, ds.in_chans, ds.num_classes)
    model.to(device)
    task = build_task(cfg.task, num_classes=ds.num_classes, classes=getattr(ds, "classes", None),
                      window=volume_window(cfg, ds))
    evaluator = None
    if predictions_dir is not None:
        # this rank's items in the order the loader gives them to the evaluator
        order = make_loader(ds, cfg.data.batch_size, train=False).sampler
        evaluator = task.evaluator(sink=palette_writer(ds, predictions_dir, order))
    ev = run_evaluator(model, task, ds, cfg.data.batch_size, device, cfg.data.num_workers,
                       cfg.run.amp, evaluator)
    result = ev.result()
    skipped = ds.take_skipped()  # under data.skip_bad: replaced by the next good item
    if skipped:
        files = "file" if len(skipped) == 1 else "files"
        log(f"skipped {len(skipped)} bad {files} (data.skip_bad), each replaced by the next "
            f"item: " + "; ".join(f"{p}: {r}" for p, r in skipped))
    if predictions_dir is not None:
        kind = "label volumes (.npy)" if cfg.model.spatial_dims == 3 else "palette PNGs"
        log(f"wrote {result['n']} {kind} to {predictions_dir}")
    run = run_dir_of(checkpoint) or Path(cfg.run.output_dir)
    out = Path(out_dir) if out_dir else run / "eval"
    out.mkdir(parents=True, exist_ok=True)
    if "cm" in ev.sums:
        names = getattr(ds, "classes", None) or [str(i) for i in range(ds.num_classes)]
        save_confusion(ev.sums["cm"], names, out)
        log(f"confusion matrix: {out / 'confusion_matrix.csv'}, {out / 'confusion_matrix.png'}")
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    return result

"""Tiny trained runs for the tests of predict, embed, attention maps and ONNX export.

Each is one epoch of the micro model (a step or two) through the CLI, on data written here:
an ImageFolder of random RGB photos of several sizes, the tiny VOC of `test_seg_voc`, or the
built-in digits (MAE).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from cli.test_cli import run_cli
from data.test_voc import write_voc
from PIL import Image

from vitmae.cli import main

TINY = ["model.arch=vit_micro_patch4", "model.decoder_embed_dim=32", "model.decoder_depth=1",
        "model.decoder_num_heads=2", "run.log_interval=1", "data.img_size=16"]
FOLDER_SIZES = [(20, 24), (31, 17), (16, 16)]  # (H, W) of the photos in each class folder


def write_image_folder(root: Path) -> Path:
    """root/{train,test}/{cat,dog}/{0,1,2}.png, RGB photos of FOLDER_SIZES."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i, (H, W) in enumerate(FOLDER_SIZES):
                photo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
                Image.fromarray(photo).save(folder / f"{i}.png")
    return root


def folder_run(root: Path, *extra: str) -> Path:
    """A classifier fine-tuned on an image folder under root/data, with `extra` overrides;
    -> its run folder."""
    data = write_image_folder(root / "data")
    run_cli(["finetune", "-c", "digits", *TINY, "data.dataset=folder", f"data.root={data}",
             "data.batch_size=4", "finetune.optim.epochs=1", f"run.output_dir={root}",
             "run.name=folder", *extra])
    return root / "folder"


def voc_run(root: Path, dataset: str, task: str, *extra: str) -> Path:
    """voc_seg (segment) or voc_cls (multilabel) on the tiny VOC under root; -> the run."""
    if not (root / "VOCdevkit").is_dir():
        write_voc(root)
    run_cli(["finetune", *TINY, f"task={task}", f"data.dataset={dataset}", f"data.root={root}",
             "data.batch_size=3", "data.train_split=mini_train", "data.val_split=mini_val",
             f"run.output_dir={root / 'runs'}", "finetune.optim.epochs=1", f"run.name={dataset}",
             *extra])
    return root / "runs" / dataset


def mae_run(root: Path) -> Path:
    """One MAE epoch on 64 digits; -> the run."""
    run_cli(["pretrain", "-c", "digits", *TINY, "data.subset=64", "data.batch_size=64",
             "pretrain.optim.epochs=1", f"run.output_dir={root}", "run.name=mae"])
    return root / "mae"


def cli(argv: list[str]) -> tuple[int, list[str], str]:
    """vitmae.cli.commands(argv) in this process -> (exit status, stdout lines, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue().splitlines(), err.getvalue()

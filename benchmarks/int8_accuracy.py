"""What ONNX export and int8 dynamic quantisation cost in accuracy, on a fine-tuned run.

The run's model is scored three ways on its own evaluation split, with the same input
tensors: PyTorch eager, `vitmae export --to onnx` run by onnxruntime in fp32, and the same
export with `--int8`. Beside the top-1 of each: the share of images whose top-1 class
differs from eager's, and the images/s of each at `--batch` (timed in the same pass):

    VITMAE_DATA=... PYTHONPATH=src python benchmarks/int8_accuracy.py runs/<a classify run>

The last line is the result as one JSON object, also appended to `results.jsonl`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml
from common import record, rounded, use_passive_omp
from torch.utils.data import DataLoader

from vitmae.config import config_from_dict
from vitmae.data import build_dataset
from vitmae.data.registry import FirstItems
from vitmae.export.onnx import export_model
from vitmae.infer.model import open_model
from vitmae.runs.folder import run_dir_of


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="a fine-tuned classification run or checkpoint")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="only the first N evaluation images (checks)")
    args = ap.parse_args()
    use_passive_omp()
    torch.set_num_threads(args.threads)
    run = run_dir_of(Path(args.run))
    if run is None:
        raise SystemExit(f"{args.run}: not a vitmae run folder or checkpoint")
    cfg = config_from_dict(yaml.safe_load((run / "config.yaml").read_text()))
    data = build_dataset(cfg.data, cfg.data.val_split, train=False)
    if args.limit:
        data = FirstItems(data, args.limit)
    eager = open_model(args.run, log=lambda *_: None)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"eager": eager}
        for name, int8 in (("onnx_fp32", False), ("onnx_int8", True)):
            path = export_model(eager, Path(tmp) / f"{name}.onnx", int8, log=lambda *_: None)
            models[name] = open_model(path)
        preds = {name: [] for name in models}
        seconds = dict.fromkeys(models, 0.0)
        labels = []
        for imgs, targets in DataLoader(data, args.batch, num_workers=cfg.data.num_workers):
            labels.append(torch.as_tensor(targets))
            for name, model in models.items():
                t0 = time.perf_counter()
                preds[name].append(model.logits(imgs).argmax(1))  # (B,)
                seconds[name] += time.perf_counter() - t0
    y = torch.cat(labels)
    top1 = {name: torch.cat(p) for name, p in preds.items()}
    out = {"benchmark": "int8_accuracy", "run": run.name, "dataset": cfg.data.dataset,
           "img_size": cfg.data.img_size, "n": len(y), "batch": args.batch,
           "threads": args.threads}
    for name, p in top1.items():
        out[f"{name}_top1"] = (p == y).double().mean().item()
        out[f"{name}_img_s"] = len(y) / seconds[name]
        if name != "eager":
            out[f"{name}_differs"] = (p != top1["eager"]).double().mean().item()
    out["int8_cost_points"] = 100 * (out["eager_top1"] - out["onnx_int8_top1"])
    record(rounded(out), packages=("onnxruntime", "onnx"))


if __name__ == "__main__":
    main()

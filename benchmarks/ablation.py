"""What the MAE-step optimisations bought: the model code before them against the code now.

Loads `src/vitmae/models/{vit,mae}.py` as they were at a base commit (default: the first
commit, before any optimisation) from git, builds both MAEs with the same weights and the
shape of `mae_step.py`, and alternates their training steps (same fused AdamW) in one process,
with HuggingFace's ViTMAE as a third contender. Per-round ratios; medians and spread.
Run it once with --threads 1 (compute-bound: what the work costs) and once with 2 (the
`mae_step.py` setting, where the number of parallel regions also counts on a busy machine).

    PYTHONPATH=src python benchmarks/ablation.py [--base 8e4861d] [--threads 2] [--rounds 8]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types

import torch
from common import HERE, interleave, per_round_ratio, record, rounded, spread, use_passive_omp
from mae_step import BATCH_SHAPE, DEC, ENC, MASK_RATIO, build_hf, build_vitmae, make_step


def load_module(name: str, commit: str, path: str, replace: dict[str, str]) -> types.ModuleType:
    """Module `name` from file `path` at git `commit`, with import lines rewritten."""
    source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=HERE, check=True,
                            capture_output=True, text=True).stdout
    for old, new in replace.items():
        source = source.replace(old, new)
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)
    return module


def build_base(commit: str, like: torch.nn.Module) -> torch.nn.Module:
    """The MAE of `commit`'s model code, shaped and weighted like `like`."""
    vit = load_module("base_vit", commit, "src/vitmae/models/vit.py", {})
    mae = load_module("base_mae", commit, "src/vitmae/models/mae.py",
                      {"from vitmae.models.vit import": "from base_vit import"})
    enc = vit.VisionTransformer(img_size=BATCH_SHAPE[-1], patch_size=like.patch_size,
                                in_chans=BATCH_SHAPE[0], embed_dim=ENC["width"],
                                depth=ENC["depth"], num_heads=ENC["heads"])
    model = mae.MaskedAutoencoder(enc, DEC["width"], DEC["depth"], DEC["heads"], MASK_RATIO,
                                  norm_pix_loss=True)
    model.load_state_dict(like.state_dict())
    return model


# Ops that move no data (views, metadata) or only dispatch to the ones listed.
NO_WORK = ("view", "reshape", "transpose", "permute", "expand", "unsqueeze", "squeeze",
           "slice", "select", "as_strided", "alias", "detach", "empty", "unbind", "flatten",
           "split", "t", "_unsafe_view", "_reshape_alias", "resolve_conj", "resolve_neg",
           "result_type", "linear", "matmul", "scaled_dot_product_attention", "layer_norm",
           "dropout", "to", "_to_copy", "contiguous", "lift_fresh", "item",
           "_local_scalar_dense", "is_nonzero", "conv2d", "convolution", "_convolution")
PARALLEL_NUMEL = 32768  # ATen's grain size: smaller element-wise ops run on one thread


def count_ops(step) -> dict[str, int]:
    """Data-moving aten ops of one step, and those big enough to run on all threads."""
    from torch.profiler import profile

    with profile(record_shapes=True) as prof:
        step()
    ops = [e for e in prof.events() if e.name.startswith("aten::")
           and e.name[6:] not in NO_WORK and all(not p.name.startswith("aten::")
                                                  or p.name[6:] in NO_WORK
                                                  for p in parents(e))]
    big = [e for e in ops if max((numel(s) for s in e.input_shapes), default=0)
           >= PARALLEL_NUMEL]
    return {"ops": len(ops), "parallel_sized_ops": len(big)}


def parents(event):
    p = event.cpu_parent
    while p is not None:
        yield p
        p = p.cpu_parent


def numel(shape) -> int:
    n = 1
    for d in shape if isinstance(shape, list | tuple) else ():
        if not isinstance(d, int):
            return 0
        n *= d
    return n if shape else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="8e4861d", help="commit of the model code to compare")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--count-ops", action="store_true",
                    help="print the ops per step of each side (profiler) instead of timing")
    args = ap.parse_args()
    use_passive_omp()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, *BATCH_SHAPE)  # (B, C, H, W)
    now = build_vitmae().train()
    base = build_base(args.base, now).train()
    peer = build_hf().train()
    steps = {name: make_step(m, torch.optim.AdamW(m.parameters(), lr=1.5e-4, fused=True), fwd)
             for name, m, fwd in (("now", now, lambda m: m(x)[0]),
                                  ("base", base, lambda m: m(x)[0]),
                                  ("peer", peer, lambda m: m(pixel_values=x).loss))}
    if args.count_ops:  # what each step asks of the machine, not how long it takes
        for step in steps.values():
            step()
        print({name: count_ops(step) for name, step in steps.items()})
        return
    times = interleave(steps, rounds=args.rounds, warmup=args.warmup)
    gain = spread(per_round_ratio(times["now"], times["base"]))
    base_vs_peer = spread(per_round_ratio(times["base"], times["peer"]))
    now_vs_peer = spread(per_round_ratio(times["now"], times["peer"]))
    record(rounded({
        "bench": "mae_step_ablation", "base_commit": args.base,
        "now_over_base": gain["median"], "now_over_base_p10": gain["p10"],
        "now_over_base_p90": gain["p90"],
        "base_over_peer": base_vs_peer["median"], "now_over_peer": now_vs_peer["median"],
        "now_over_peer_p10": now_vs_peer["p10"], "now_over_peer_p90": now_vs_peer["p90"],
        "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
    }), packages=("transformers",))


if __name__ == "__main__":
    main()

"""One code path for 1 or N processes: DDP is detected from torchrun's environment.

As in nanoGPT: `RANK`/`WORLD_SIZE`/`LOCAL_RANK` set by torchrun turn on DDP (gloo on CPU,
NCCL on CUDA); without them everything below is a no-op on a single process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_distributed(device: str = "auto") -> torch.device:
    """Start the process group when launched by torchrun; return this process's device."""
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not is_distributed():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def say(*args, **kwargs) -> None:
    """`print` on rank 0 only, so that a torchrun job logs each line once. Read from torchrun's
    RANK, which outlives the process group (every process is rank 0 without torchrun)."""
    if os.environ.get("RANK", "0") == "0":
        print(*args, **kwargs)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks (in place) and return it."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any rank (for a coordinated stop)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    return bool(all_reduce_sum(t).item() > 0)


def gather_objects(obj) -> list:
    """Every rank's `obj` (picklable) in rank order, on every rank; [obj] in one process."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()

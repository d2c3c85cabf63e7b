"""The training loop's stop flag: SIGTERM (a scheduler's preemption) or Ctrl-C lets the
current optimizer step finish; the loop then writes a checkpoint and raises `Interrupted`,
which the CLI turns into exit status 128 + the signal's number. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

from vitmae import distributed as dist


class Interrupted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was written. `.signum` says which."""

    def __init__(self, msg: str, signum: int):
        super().__init__(msg)
        self.signum = signum


class StopFlag:
    """Records SIGTERM / SIGINT so that the loop can finish its step and checkpoint; under
    DDP every rank stops at the same step when any rank got the signal."""

    def __init__(self):
        self.signum: int | None = None
        self._old = {}
        self._pid = os.getpid()

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a forked DataLoader worker: Ctrl-C reaches the whole
            return  # process group, and the main process stops the loader cleanly
        if self.signum is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\nreceived {signal.Signals(signum).name}: finishing the current step, "
              "then writing a checkpoint", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)

    def requested(self, device: torch.device) -> bool:
        """True on every rank when a signal reached any rank (a collective under DDP)."""
        return dist.any_rank(self.signum is not None, device)

    def interrupted(self, step: int, ckpt: Path, run: Path) -> Interrupted:
        signum = self.signum or signal.SIGTERM  # another rank got it
        return Interrupted(f"stopped by {signal.Signals(signum).name} at step {step}; "
                           f"checkpoint written to {ckpt}. Resume with: --resume {run}", signum)

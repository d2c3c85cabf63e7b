"""Freed CPU memory stays in the process: a training step's activations are not faulted in
again on every step (glibc), and the setting is a no-op elsewhere."""

import platform
import subprocess
import sys

import pytest

from vitmae.train import allocator

PAGE, BLOCK, BLOCKS, LARGE = 4096, 8 * 2**20, 10, 64 * 2**20

# A child process, so the setting starts from glibc's defaults: five rounds of allocating
# ten 8 MB blocks and one of 64 MB (over glibc's largest mmap threshold), touching every page
# and freeing them all (as a step's activations); the fewest minor page faults of rounds 3-5
# are printed (the kernel may fault pages in on its own now and then; glibc's defaults fault
# in every round).
CHILD = f"""
import resource, torch
from vitmae.train.allocator import keep_freed_memory
assert keep_freed_memory()
def step():
    blocks = [torch.empty({BLOCK}, dtype=torch.uint8) for _ in range({BLOCKS})]
    blocks.append(torch.empty({LARGE}, dtype=torch.uint8))
    for b in blocks:
        b[::{PAGE}] = 1
for _ in range(2):
    step()
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults))
"""


@pytest.mark.skipif(not allocator.has_glibc(), reason="the setting is glibc's (Linux)")
def test_freed_blocks_are_reused_without_page_faults(subprocess_env):
    pages = (BLOCKS * BLOCK + LARGE) // PAGE
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         env=subprocess_env, timeout=120, check=True)
    kept = int(out.stdout.split()[-1])
    # with glibc's defaults (glibc 2.36, one OpenMP thread as here) the same child faulted in
    # at least the 64 MB block's 16,384 pages in every round (mapped afresh each time), and
    # in some rounds the trimmed 80 MB as well
    assert kept < 0.05 * pages, (kept, pages)


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("musl", "1.2"))
    assert allocator.keep_freed_memory() is False


@pytest.mark.parametrize("keep", [True, False])
def test_the_command_sets_it_up_only_when_asked(monkeypatch, tmp_path, keep):
    from vitmae import cli
    from vitmae.train import runner

    calls, runs = [], []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1))
    monkeypatch.setattr(runner, "run_finetune", lambda cfg, resume=None: runs.append(cfg))
    assert cli.main(["finetune", "run.device=cpu", f"run.keep_freed_memory={keep}",
                     f"run.output_dir={tmp_path}"]) == 0
    assert len(runs) == 1 and calls == ([1] if keep else [])


def test_library_setup_leaves_the_allocator_alone(monkeypatch):
    from vitmae.config import load_config
    from vitmae.train import runner

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1))
    runner.setup(load_config(None, ["run.device=cpu", "run.keep_freed_memory=true"]))
    assert calls == []

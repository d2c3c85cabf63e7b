"""Keep freed CPU memory in the process between training steps (glibc's malloc).

glibc gives memory back to the kernel whenever more than its trim threshold lies free at the
top of a heap, and serves large blocks from fresh mappings that are unmapped again on free. A
training step frees and reallocates hundreds of MB of activations, so every step faults them
back in page by page, which one-thread processes pay for in system time. With no trim and no
mappings, the freed blocks stay in the heap for the next step, as preloading jemalloc or
tcmalloc (PyTorch's CPU performance advice) would do; the cost is a higher peak. The figures
are in docs/performance.md. Other C libraries are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters, <malloc.h>
TRIM_THRESHOLD = 2**31 - 1  # bytes free at a heap's top before it is trimmed (int max)


def has_glibc() -> bool:
    """Whether this process runs on glibc (Linux), whose malloc `mallopt` tunes."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Stop glibc from trimming its heaps and from mapping large blocks, for this process
    (and the workers it forks later) -> whether it was set; False without glibc (macOS,
    Windows, musl)."""
    if not has_glibc():
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    trim = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    no_mmap = libc.mallopt(M_MMAP_MAX, 0)  # blocks of any size come from the heap
    return bool(trim and no_mmap)

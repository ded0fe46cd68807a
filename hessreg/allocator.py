"""Keep the memory a training step frees inside the process, instead of handing it back to the kernel each step.

A step allocates and frees the same activation-sized buffers every time. With glibc's default ``malloc`` settings a
freed block above the mmap threshold is unmapped, and a free heap top above the trim threshold is returned to the
kernel; the next step maps the pages again and the kernel zero-fills each one on first touch. On the small convnet
(batch 128, one thread, a process training one method) that is thousands of minor page faults per SGD step
(``tests/test_allocator.py`` counts them) and more per second-order step. :func:`retain_freed_memory` sets the mmap
threshold to its documented 64-bit ceiling (32 MiB; a set value also stops glibc from moving it) and the trim
threshold to 1 GiB, so freed pages stay mapped and the next step reuses them.

It changes where buffers live, not what is computed: PyTorch aligns every CPU buffer to 64 bytes whichever way the
memory was obtained, and the committed records rerun bit for bit with it (``tests/test_train.py``). The price is
that a process keeps its peak heap until it exits. Settings a user made through glibc's own environment
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``) are left
alone, and off glibc this does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h> parameter numbers
MMAP_THRESHOLD = 32 << 20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the ceiling mallopt(3) documents
TRIM_THRESHOLD = 1 << 30
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_state: bool | None = None  # None: not tried yet in this process


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once; later calls return the first answer).

    Returns whether the thresholds are now this module's: False off glibc, or where the user set them through
    glibc's environment (module docstring)."""
    global _state
    if _state is None:
        _state = _set_thresholds()
    return _state


def describe() -> str:
    """This process's setting, as a benchmark's JSON records it: "retained" or "glibc defaults"."""
    return "retained" if _state else "glibc defaults"


def _set_thresholds() -> bool:
    if any(name in os.environ for name in USER_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.gnu_get_libc_version  # glibc's own: tells glibc from a libc whose mallopt ignores these (musl)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no C library by that name, or not glibc (macOS has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1

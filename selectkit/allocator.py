"""Keep freed heap memory in the process between training steps (glibc).

PyTorch's CPU tensors come from the C library's ``malloc``. glibc's default policy adapts its mmap
threshold to the largest block freed (at most 32 MiB) and hands free memory at the top of the heap back
to the operating system once it exceeds twice that threshold. A training step allocates and frees
activations of tens of MiB each, so depending on where a few long-lived blocks happen to lie in the
heap, every step can give back a hundred MiB or more and page-fault it in again in the next: tens of
thousands of page faults per step, each one a kernel entry and a page cleared. Which runs suffer is
a matter of chance (the order of earlier allocations), which is why the same loop can be fast in one
process and 10-20% slower in another.

`retain_freed_memory` fixes the mmap threshold at its ceiling and raises the trim threshold, so that
freed blocks stay in the heap for the next step. The settings are process-wide and stay in force after
the run (glibc offers no way back to its adaptive mode). On other C libraries it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: ``mallopt`` parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: the largest mmap threshold glibc accepts on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``)
MMAP_THRESHOLD_MAX = 32 << 20


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL(None)
    except (ValueError, OSError):
        return None
    return libc if hasattr(libc, "mallopt") else None


def retain_freed_memory(megabytes: float) -> bool:
    """Let glibc keep up to ``megabytes`` of freed heap memory for reuse instead of returning it to
    the OS, and serve blocks up to 32 MiB from the heap. ``0`` leaves the C library's policy alone.

    Returns True when the settings were applied (glibc), False otherwise.
    """
    if megabytes <= 0:
        return False
    libc = _glibc()
    if libc is None:
        return False
    trim = int(min(float(megabytes) * (1 << 20), 2**31 - 1))
    ok = libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(MMAP_THRESHOLD_MAX)) == 1
    ok = (libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(max(trim, MMAP_THRESHOLD_MAX))) == 1) and ok
    return ok

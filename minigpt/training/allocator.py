"""Keep the memory a training step frees for the next step (glibc's malloc, Linux).

A training step allocates the same activations and gradients every time and frees them at its
end. glibc's malloc hands blocks above a threshold back to the operating system as soon as they
are freed (blocks it mapped on their own, and free space at the top of its heap), so the next step
asks for them again and the kernel supplies each 4 KiB page afresh, zero-filled, with a page
fault on first touch. For the cpu_90s model that is over ten thousand page faults a step.

`keep_freed_memory()` raises both thresholds (mallopt), so freed blocks stay in the process and the
next step reuses them: the process keeps its peak memory instead of shrinking between steps,
which a training run reaches every step anyway. docs/performance.md measures what it saves.
PyTorch's own advice for CPU training is the same idea by another route: preload a different
allocator (jemalloc or tcmalloc); this needs nothing installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt's parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1  # free space at the heap's top beyond this goes back to the OS
M_MMAP_THRESHOLD = -3  # blocks at least this large get a mapping of their own, unmapped on free

# the largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX):
# blocks up to 32 MiB come from the heap, where freeing keeps them
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024
GLIBC_START = 128 * 1024  # both thresholds when a process starts (glibc then adjusts them itself)


def _glibc():
    """The C library when it is glibc (it has mallopt), else None: macOS, Windows, musl."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def set_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """Set glibc's mmap and trim thresholds for this process; False where there is no glibc (the
    platform's allocator is left as it is) or glibc refused a value. Setting either turns off
    glibc's own adjustment of both, so both are always set."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))


def keep_freed_memory() -> bool:
    """Keep freed blocks of up to 32 MiB in the process for reuse (see the module's docstring)."""
    return set_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)

"""Let the C allocator reuse block buffers instead of asking the kernel for new pages.

Every block allocates and frees buffers of tens to hundreds of MB (the flood of one
``segment`` block holds about 12 M voxels in several arrays; a network tile's
activations are hundreds of MB).  glibc serves allocations above its mmap threshold
with fresh mappings, so each such buffer costs one page fault per 4 KiB, the kernel's
zeroing of every page and an unmap on ``free``.  :func:`reuse_buffers` turns mmap off:
large buffers come from the heap, where the next block finds the space the last one
freed; all threads share :data:`ARENAS` arena (dask's and zarr's threads would
otherwise each get one, and a thread arena maps anything above 64 MiB afresh), and
free memory above :data:`TRIM_THRESHOLD` at the top of the heap goes back to the OS.

Measured with the ``chunkseg`` CLI on a 251 × 1024 × 1024 time point (2-core CPU, one run,
``benchmarks/allocator.py``): ``segment`` took 143 s wall, 242 CPU s of which 92 s in the
kernel, with a 1 MiB mmap threshold; 102 s (26 s kernel) with glibc's defaults; 93 s (12 s
kernel) with this.  Resident memory is held by the blocks in flight, not by the volume or the
series: over 8 time points of 128 × 512 × 512 its peak by quarter of the run was 0.74 / 1.01 /
1.01 / 0.98 GB (glibc's defaults: 0.74 / 1.27 / 1.32 / 1.32 GB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["ALLOCATOR_ENV", "ARENAS", "TRIM_THRESHOLD", "reuse_buffers"]

#: bytes of free memory at the top of a heap that glibc keeps before returning it
TRIM_THRESHOLD = 256 << 20
#: glibc malloc arenas: one, the heap of the main thread (glibc maps an allocation
#: larger than a thread arena's 64 MiB heap afresh even with mmap turned off)
ARENAS = 1
#: glibc's mallopt parameter numbers
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
#: the same settings for a process not yet started (glibc reads them at start-up)
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
                 "MALLOC_ARENA_MAX": str(ARENAS)}


def reuse_buffers() -> bool:
    """Set this process's allocator as :data:`ALLOCATOR_ENV` does (glibc only).

    Call it before threads start: a thread keeps the arena it got first.  Returns
    False where the C library is not glibc (nothing changes there).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(bool(libc.mallopt(param, value)) for param, value in (
            (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_ARENA_MAX, ARENAS)))
    except (OSError, AttributeError):
        return False

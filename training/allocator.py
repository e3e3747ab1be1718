"""Keep the memory a training process frees for its next step (glibc's `malloc`), instead of handing it back to the
system and faulting it in again.

A training step on a CPU allocates and frees the same few megabytes of activations, gradients and logits every
step. With glibc's defaults, blocks above the mmap threshold come from fresh mappings and the free top of the heap
goes back to the system, so each step page-faults its memory in again: 8,000-19,000 page faults per step of the
`small` memory models (batch 32). [`keep_freed_memory`] raises the mmap threshold to glibc's maximum (32 MiB on
64-bit) and the trim threshold to 2 GiB, so freed blocks are reused: 150-400 faults per step, and the step 5-15%
faster on one thread (`memory-models benchmark allocator`; docs/benchmarks.md). The arithmetic is the same, so the
numbers are bit for bit those of a run without it. The process keeps up to its peak heap until it exits.

`memory-models` calls it at start and in every worker process it spawns; imports only the standard library.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX)
TRIM_THRESHOLD_BYTES = 2**31 - 1  # the largest value of mallopt's int


def keep_freed_memory() -> bool:
    """Have glibc's `malloc` keep freed memory for reuse in this process (see the module); `False`, changing
    nothing, where the C library is not glibc (macOS, musl) or refuses a setting."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                    TRIM_THRESHOLD_BYTES))

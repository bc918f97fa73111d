"""CPU runs keep their large buffers: glibc's malloc is told not to hand them back to the kernel between ops.

A forward pass on the CPU allocates and frees the same few activation-sized tensors hundreds of times. glibc serves
blocks above its mmap threshold (which adapts up to 32 MiB) with a fresh mmap each time, and unmaps them when
freed, so every such tensor is page-faulted in again, page by page, and zeroed by the kernel: without recycling, a
forward pass runs 1.8x slower per pixel once one activation passes about 32 MB (the default model above about 350²
input, the M networks above about 200²), on CPUs with small and with very large last-level caches alike, so it is
not a cache effect (bench/RESULTS.md). During a run the thresholds are raised so freed blocks stay in the heap and
are reused; after it, the thresholds go back to glibc's adapted values and `malloc_trim` returns the free memory,
so the process's resident memory falls back to what it was.

Two limits of that recycling, found by counting page faults (tests/test_allocator.py, bench/bench_hugepages.py):
PyTorch allocates with posix_memalign(64), whose few-byte alignment slivers land in glibc's tcache, so a freed block
cannot always merge with its neighbours and takes fresh heap (memory.CPU_HEAP_RETENTION measures what a pass then
holds). And a thread other than the main one (as ComfyUI's prompt worker is) allocates from an arena of 64 MiB
heaps, so its larger blocks are mapped afresh whatever the threshold. PyTorch's own `THP_MEM_ALLOC_ENABLE=1`
(blocks of 2 MiB and up 2 MiB-aligned and backed by transparent huge pages) avoids both, but the transformer blocks
run in cache-sized chunks (network.py), so a pass allocates few large blocks, and huge pages make the default model
0-20 % slower in the main thread and in a worker thread alike, for the same memory (bench/bench_hugepages.py,
bench/RESULTS.md): the pack leaves PyTorch's choice to the user.

glibc only (Linux); elsewhere these are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
# During a run: blocks up to this size come from the heap (the largest one a 2048² tile of an M network needs is
# far below it); freed memory stays in the heap.
RUN_MMAP_THRESHOLD = 1 << 30
RUN_TRIM_THRESHOLD = 1 << 40
# After a run: the values glibc's own dynamic rule reaches in a process that has freed large blocks (mmap threshold
# at its 32 MiB maximum, trim threshold twice that).
IDLE_MMAP_THRESHOLD = 32 << 20
IDLE_TRIM_THRESHOLD = 64 << 20

_lock = threading.Lock()
_depth = 0


@lru_cache(maxsize=1)
def _libc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


def available() -> bool:
    return _libc() is not None


HUGEPAGES_ENV = "THP_MEM_ALLOC_ENABLE"
_THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


@lru_cache(maxsize=1)
def kernel_hugepages() -> bool:
    """Whether the kernel gives transparent huge pages to memory that asks for them ("always" or "madvise")."""
    try:
        with open(_THP_SETTING) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def hugepages_in_effect() -> bool:
    """Whether this process's PyTorch allocates huge-page-backed blocks (as far as its environment tells)."""
    return os.environ.get(HUGEPAGES_ENV, "").strip().lower() in ("1", "true") and kernel_hugepages()


def _int(value: int) -> int:
    # mallopt takes a C int: larger values saturate there.
    return min(value, 2**31 - 1)


@contextmanager
def reuse_large_buffers() -> Iterator[None]:
    """Within it, large CPU tensors are recycled by malloc instead of being mapped and unmapped per op. Nestable and
    safe from several threads (the outermost exit restores and trims)."""
    global _depth
    libc = _libc()
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(M_MMAP_THRESHOLD, _int(RUN_MMAP_THRESHOLD))
            libc.mallopt(M_TRIM_THRESHOLD, _int(RUN_TRIM_THRESHOLD))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_THRESHOLD, IDLE_MMAP_THRESHOLD)
                libc.mallopt(M_TRIM_THRESHOLD, IDLE_TRIM_THRESHOLD)
                libc.malloc_trim(0)

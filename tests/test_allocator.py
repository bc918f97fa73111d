"""CPU runs recycle their large buffers (swinir/allocator.py): counted in page faults, not in seconds."""

from __future__ import annotations

import resource

import pytest
import torch

from swinir import allocator

pytestmark = pytest.mark.skipif(not allocator.available(), reason="glibc's mallopt is not available on this system")

BIG = 64 << 20  # above glibc's largest adaptive mmap threshold (32 MiB)


def _faults(fn) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _churn(times: int = 4) -> None:
    """What a forward pass does to its activations: allocate, write, free, again."""
    for _ in range(times):
        t = torch.empty(BIG // 4, dtype=torch.float32)
        t.fill_(1.0)
        del t


def test_large_buffers_are_reused_inside_not_outside():
    pages = BIG // resource.getpagesize()
    outside = _faults(_churn)
    # Every fresh mmap of 64 MiB is faulted in page by page: four allocations, four times the pages.
    assert outside > 3 * pages, outside
    with allocator.reuse_large_buffers():
        _churn(1)  # the first allocation grows the heap once
        inside = _faults(_churn)
    assert inside < pages // 4, (inside, pages)


def test_memory_is_given_back_after_the_run():
    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmRSS:"))

    with allocator.reuse_large_buffers():
        t = torch.ones(4 * BIG // 4)
        held = rss()
        del t
    # malloc_trim on the way out returns the freed 256 MiB to the kernel.
    assert rss() < held - 3 * BIG


def test_nested_and_threaded_use_restores_once():
    import threading

    errors = []

    def work():
        try:
            with allocator.reuse_large_buffers():
                with allocator.reuse_large_buffers():
                    _churn(2)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and allocator._depth == 0
    # Back outside: large blocks are mapped afresh again (the idle thresholds are in place).
    assert _faults(_churn) > 3 * (BIG // resource.getpagesize())

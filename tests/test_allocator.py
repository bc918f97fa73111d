"""CPU runs recycle their large buffers (swinir/allocator.py): counted in page faults, not in seconds.

Each check runs in a fresh interpreter: how glibc places a block depends on everything the process allocated before
(a pytest process that has run other tests holds a heap of its own history), and PyTorch fixes its huge-page choice
at its first allocation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from swinir import allocator

pytestmark = pytest.mark.skipif(not allocator.available(), reason="glibc's mallopt is not available on this system")

REPO = Path(__file__).resolve().parents[1]

PRELUDE = """
import json, resource, threading
import swinir  # before torch, as the command line does: it must leave PyTorch's allocation choice alone
import torch
from swinir import allocator

BIG = 64 << 20  # above glibc's largest adaptive mmap threshold (32 MiB) and the 64 MiB heaps of thread arenas
PAGES = BIG // resource.getpagesize()

def faults(fn):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / PAGES

def churn(times=4):
    # What a forward pass does to its activations: allocate, write, free, again.
    for _ in range(times):
        t = torch.empty(BIG // 4, dtype=torch.float32)
        t.fill_(1.0)
        del t

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmRSS:"))
"""


def _child(body: str, *, hugepages: bool | None = False) -> dict:
    """Run `body` after PRELUDE in a fresh interpreter; it prints one JSON object, returned here. `hugepages`:
    THP_MEM_ALLOC_ENABLE=1 (PyTorch's huge-page blocks) or 0; None leaves it unset, PyTorch's default."""
    env = {k: v for k, v in os.environ.items() if k != allocator.HUGEPAGES_ENV}
    env["PYTHONPATH"] = str(REPO)
    env["OMP_NUM_THREADS"] = "1"
    if hugepages is not None:
        env[allocator.HUGEPAGES_ENV] = "1" if hugepages else "0"
    code = PRELUDE + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_large_buffers_are_reused_inside_not_outside():
    r = _child(
        """
        outside = faults(churn)
        with allocator.reuse_large_buffers():
            # Until glibc's tcache bins for posix_memalign's alignment slivers are full, a freed block cannot merge
            # with its neighbours and the next one takes fresh heap (allocator.py): a warm-up reaches the steady state.
            churn(16)
            inside = faults(churn)
        print(json.dumps(dict(outside=outside, inside=inside)))
        """,
        hugepages=False,
    )
    # Every fresh mmap of 64 MiB is faulted in page by page: four allocations, four times the pages.
    assert r["outside"] > 3, r
    assert r["inside"] < 0.25, r


def test_memory_is_given_back_after_the_run():
    r = _child(
        """
        with allocator.reuse_large_buffers():
            t = torch.ones(4 * BIG // 4)
            held = rss()
            del t
        print(json.dumps(dict(held=held, after=rss())))
        """,
        hugepages=False,
    )
    # malloc_trim on the way out returns the freed 256 MiB to the kernel.
    assert r["after"] < r["held"] - 3 * (64 << 20), r


def test_nested_and_threaded_use_restores_once():
    r = _child(
        """
        errors = []

        def work():
            try:
                with allocator.reuse_large_buffers():
                    with allocator.reuse_large_buffers():
                        churn(2)
            except Exception as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(json.dumps(dict(errors=errors, depth=allocator._depth, outside=faults(churn))))
        """,
        hugepages=False,
    )
    assert not r["errors"] and r["depth"] == 0, r
    # Back outside: large blocks are mapped afresh again (the idle thresholds are in place).
    assert r["outside"] > 3, r


THREADED_CHURN = """
result = {}

def work():
    with allocator.reuse_large_buffers():
        churn(16)
        result["thread"] = faults(churn)

t = threading.Thread(target=work)
t.start()
t.join()
print(json.dumps(dict(result, hugepages=allocator.hugepages_in_effect())))
"""


def test_a_worker_thread_maps_its_large_blocks_afresh_without_huge_pages():
    """What ComfyUI's prompt worker gets: a thread arena's 64 MiB heaps cannot hold the block, so the mmap threshold
    does not matter and every block is faulted in again (with chunked blocks a pass has few such blocks left)."""
    r = _child(THREADED_CHURN, hugepages=False)
    assert not r["hugepages"] and r["thread"] > 3, r


@pytest.mark.skipif(not allocator.kernel_hugepages(), reason="this kernel gives no transparent huge pages")
def test_huge_page_blocks_are_reused_in_any_thread():
    r = _child(THREADED_CHURN, hugepages=True)
    # Huge pages: at most one fault per 2 MiB (1/512 of the 4 KiB pages), and blocks merge and are reused.
    assert r["hugepages"] and r["thread"] < 0.25, r


def test_importing_swinir_leaves_pytorchs_allocation_choice_alone():
    # With chunked blocks huge pages do not pay (bench/RESULTS.md): swinir sets nothing, and a
    # user's own THP_MEM_ALLOC_ENABLE stands.
    probe = "import os\nprint(json.dumps(dict(env=os.environ.get(allocator.HUGEPAGES_ENV))))"
    assert _child(probe, hugepages=None)["env"] is None
    assert _child(probe, hugepages=True)["env"] == "1"
    assert _child(probe, hugepages=False)["env"] == "0"

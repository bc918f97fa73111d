"""Peak memory of code run in a fresh interpreter, and of one forward pass: what the memory tests and benchmarks
measure (tests/test_memory.py checks swinir.memory's estimate against it; bench/bench_memory.py --calibrate prints
the table)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The process's own high-water mark; ru_maxrss would also count the parent's RSS at the fork.
RSS = 'rss = lambda: int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) * 1024'

# One forward pass of a randomly initialised network (memory does not depend on the weights); the baseline is taken
# after a tiny warm-up pass so that one-off allocations are not counted.
FORWARD_CHILD = r"""
import json, sys, torch
from swinir import SwinIR, SwinIRConfig, memory
if {threads}:
    torch.set_num_threads({threads})
cfg = SwinIRConfig(**json.loads({config!r}))
model = SwinIR(cfg).eval()
{rss}
with torch.inference_mode():
    model(torch.rand(1, cfg.in_chans, 2 * cfg.window_size, 2 * cfg.window_size))
    base = rss()
    model(torch.rand(1, cfg.in_chans, {size}, {size}))
print(json.dumps(dict(used=rss() - base, estimate=memory.estimate_bytes(cfg, {size} ** 2))))
"""


def run_child(code: str, timeout: float | None = None, cwd: Path = ROOT) -> dict:
    """Runs `code` in a fresh interpreter, so its peak RSS is its own; returns the JSON of its last output line.
    It starts in `cwd`, a checkout, and imports that checkout's swinir (`python -c` puts its folder first)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=timeout,
                         cwd=cwd)
    return json.loads(out.stdout.strip().splitlines()[-1])


def forward_peak(config: dict, size: int, threads: int = 0) -> dict[str, int]:
    """Bytes one forward pass of `config` on a size² input adds to a fresh process's peak RSS ('used'), and
    swinir.memory's estimate for it ('estimate'). threads=0 keeps torch's default."""
    child = FORWARD_CHILD.format(rss=RSS, config=json.dumps(config), size=size, threads=threads)
    return run_child(child, timeout=600)

"""PyTorch's huge-page CPU blocks (THP_MEM_ALLOC_ENABLE=1, the user's choice) against its
default 64-byte-aligned ones: seconds and the peak memory a pass adds, for the default model through the engine.

    python -m bench.bench_hugepages [--sizes 768 1024] [--tiles auto 384 whole] [--repeats 2] [--threads 2]

Each measurement is one restore in a fresh process (the heap and PyTorch's choice are per process), the two settings
interleaved, medians; "x" columns are huge pages over the default. Also in the main thread against a worker thread
(as ComfyUI's prompt worker runs), with --thread. Run with the machine otherwise idle (training paused).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, threading, time
import swinir  # first, as the command line does; the parent sets THP_MEM_ALLOC_ENABLE either way
import torch
from swinir import allocator, memory
from swinir.budget import memory_budget
torch.set_num_threads({threads})
model = swinir.load_model(swinir.default_model_path())
x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, {side}, {side}, generator=torch.Generator().manual_seed(0)), 5, 1, 2)
tile = {tile!r}
tile = None if tile == "auto" else ({side} if tile == "whole" else int(tile))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
out = {{}}
def run():
    t = time.perf_counter()
    swinir.restore(model, x, tile=tile)
    out["seconds"] = time.perf_counter() - t
if {thread}:
    th = threading.Thread(target=run); th.start(); th.join()
else:
    run()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
from swinir.engine import auto_tile
cpu = torch.device("cpu")
window = model.config.window_size
padded = -(-{side} // window) * window
budget = memory.estimate_budget(memory_budget(cpu), cpu)  # as swinir.restore sizes it
out["tile"] = auto_tile(model.config, padded, padded, budget, torch.float32) if tile is None else tile
print(json.dumps(dict(out, added=peak - base, hugepages=allocator.hugepages_in_effect())))
"""


def measure(side: int, tile: str, hugepages: bool, threads: int, thread: bool) -> dict:
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE="1" if hugepages else "0")
    code = CHILD.format(side=side, tile=tile, threads=threads, thread=thread)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
    r = json.loads(done.stdout.strip().splitlines()[-1])
    if r["hugepages"] != hugepages:
        raise SystemExit("this kernel gives no transparent huge pages: nothing to compare")
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[768, 1024])
    p.add_argument("--tiles", nargs="+", default=["auto", "384", "whole"])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--thread", action="store_true", help="restore in a worker thread, as ComfyUI does")
    a = p.parse_args()
    gib = 1 << 30
    where = "worker thread" if a.thread else "main thread"
    print(f"{where}\n\n| input | tile (default / huge pages) | default s | huge pages s | x | default GiB added | "
          "huge pages GiB added | x |")
    print("|---|---|---|---|---|---|---|---|")
    for side in a.sizes:
        for tile in a.tiles:
            runs: dict[bool, list[dict]] = {False: [], True: []}
            for _ in range(a.repeats):
                for hp in (False, True):
                    runs[hp].append(measure(side, tile, hp, a.threads, a.thread))
            s = {hp: statistics.median(r["seconds"] for r in runs[hp]) for hp in runs}
            m = {hp: statistics.median(r["added"] for r in runs[hp]) for hp in runs}
            chosen = f"{tile} ({runs[False][0]['tile']} / {runs[True][0]['tile']})" if tile == "auto" else tile
            print(f"| {side}² | {chosen} | {s[False]:.1f} | {s[True]:.1f} | {s[True] / s[False]:.2f} | "
                  f"{m[False] / gib:.2f} | {m[True] / gib:.2f} | {m[True] / m[False]:.2f} |", flush=True)


if __name__ == "__main__":
    main()

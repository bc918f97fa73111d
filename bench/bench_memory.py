"""Peak memory and time of restoring large images with auto tiling (the default model, CPU).

Each size runs in a fresh child process; peak RSS is the process's high-water mark (ru_maxrss) and the baseline
is the RSS after loading torch and the model, so 'used' is what the restoration itself added.

    python bench/bench_memory.py [--sizes 1024 2048]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time, torch
sys.path.insert(0, {root!r})
import swinir
from swinir import memory
model = swinir.load_model(swinir.default_model_path())
x = torch.rand(1, 3, {size}, {size})
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
base = rss()
tiles = []
t = time.perf_counter()
y = swinir.restore(model, x, tile="auto", progress=lambda d, n: tiles.append(n))
elapsed = time.perf_counter() - t
budget = memory.memory_budget(torch.device("cpu"))
print(json.dumps(dict(size={size}, seconds=elapsed, tiles=tiles[-1], peak=rss(), base=base, budget=budget,
                      out=list(y.shape))))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    args = ap.parse_args()
    rows = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), size=size)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    gib = 1 << 30
    print("| input | tiles | time s | s per Mpx | peak RSS GiB | used (peak - base) GiB | budget GiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        mpx = r["size"] ** 2 / 1e6
        print(f"| {r['size']}² | {r['tiles']} | {r['seconds']:.1f} | {r['seconds'] / mpx:.1f} | {r['peak'] / gib:.2f} | "
              f"{(r['peak'] - r['base']) / gib:.2f} | {r['budget'] / gib:.2f} |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"\npeak RSS growth {a['size']}² → {b['size']}²: {100 * (b['peak'] / a['peak'] - 1):+.1f} %; "
              f"time per pixel ratio: {(b['seconds'] / b['size'] ** 2) / (a['seconds'] / a['size'] ** 2):.2f}")


if __name__ == "__main__":
    main()

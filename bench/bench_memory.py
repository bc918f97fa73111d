"""Peak memory and time of restoring large images with auto tiling (the default model, CPU).

Each size runs in a fresh child process; peak RSS is the process's high-water mark (VmHWM) and the baseline
is the RSS after loading torch and the model, so 'used' is what the restoration itself added.

    python -m bench.bench_memory [--sizes 1024 2048] [--tile auto|PIXELS]
    python -m bench.bench_memory --calibrate    # measured bytes per pixel of one forward vs swinir.memory's estimate
    python -m bench.bench_memory --sweep 128 256 512 768   # time per pixel of one forward pass by input side
"""

from __future__ import annotations

import argparse

from testkit.peak_memory import RSS, forward_peak, run_child

CHILD = r"""
import json, sys, time, torch
import swinir
from swinir.budget import memory_budget
model = swinir.load_model(swinir.default_model_path())
x = torch.rand(1, 3, {size}, {size})
{rss}
base = rss()
tiles = []
t = time.perf_counter()
y = swinir.restore(model, x, tile={tile!r}, progress=lambda d, n: tiles.append(n))
elapsed = time.perf_counter() - t
budget = memory_budget(torch.device("cpu"))
print(json.dumps(dict(size={size}, seconds=elapsed, tiles=tiles[-1], peak=rss(), base=base, budget=budget,
                      out=list(y.shape))))
"""

_M = dict(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6)
# Input sides are large enough that every activation is above glibc's largest mmap threshold (32 MB), so the
# peak is the live tensors and not heap fragmentation.
CALIBRATION = [
    ("lightweight S x2", dict(embed_dim=60, depths=[6] * 4, num_heads=[6] * 4, task="lightweight_sr",
                              upsampler="pixelshuffledirect", scale=2), 512),
    ("classical M x2", dict(_M, scale=2), 256),
    ("classical M x4", dict(_M, scale=4), 256),
    ("real-world M x4", dict(_M, task="real_sr", upsampler="nearest+conv", scale=4), 256),
    ("color denoise M", dict(_M, task="color_denoise", upsampler="", scale=1, noise_level=25), 256),
]


def calibrate() -> None:
    print("| network | input | measured MiB | measured bytes/px | estimate MiB | estimate / measured |")
    print("|---|---|---|---|---|---|")
    for name, config, size in CALIBRATION:
        r = forward_peak(config, size)
        mib = 1 << 20
        print(f"| {name} | {size}² | {r['used'] / mib:.0f} | {r['used'] / size ** 2:.0f} | "
              f"{r['estimate'] / mib:.0f} | {r['estimate'] / r['used']:.2f} |", flush=True)


def sweep(sides: list[int]) -> None:
    """Whether the auto rule may use large tiles: seconds per Mpx of the default model by input side."""
    import time

    import torch

    import swinir

    model = swinir.load_model(swinir.default_model_path())
    print(f"threads: {torch.get_num_threads()}")
    print("| input | best of 2 s | s per Mpx |")
    print("|---|---|---|")
    with torch.inference_mode():
        model(torch.rand(1, 3, 64, 64))
        for side in sides:
            x = torch.rand(1, 3, side, side)
            times = []
            for _ in range(2):
                t = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t)
            print(f"| {side}² | {min(times):.2f} | {min(times) / side ** 2 * 1e6:.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--tile", type=lambda v: v if v == "auto" else int(v), default="auto",
                    help="tile for swinir.restore: 'auto' (default) or a size in pixels")
    ap.add_argument("--calibrate", action="store_true", help="measure one forward pass per network family instead")
    ap.add_argument("--sweep", type=int, nargs="+", metavar="SIDE", help="time one forward pass per input side instead")
    args = ap.parse_args()
    if args.sweep:
        sweep(args.sweep)
        return
    if args.calibrate:
        calibrate()
        return
    rows = [run_child(CHILD.format(rss=RSS, size=size, tile=args.tile)) for size in args.sizes]
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

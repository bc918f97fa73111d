"""CPU speed by tile size: the measurements behind `swinir/autotile.py`, and the check of its rule.

    python bench/bench_tiles.py --sweep [--family S M] [--sides 128 192 256 384 512 768]
        time per pixel of one forward pass by input side (interleaved, medians): where the cache knee is
    python bench/bench_tiles.py --compare [--sizes 768 1024 2048] [--repeats 3]
        the default model on size² images: auto against fixed tiles 128/192/256/384 and the whole image
        (memory-bound auto, the rule before the cache cap, where the whole image does not fit the budget),
        interleaved, medians, ratios; with --memory, each configuration's peak RSS in a fresh process
    python bench/bench_tiles.py --compile [--tile 256]
        torch.compile against eager at one fixed tile size: compile time and median seconds per tile

Run with the machine otherwise idle (training paused with SIGSTOP); 2 threads unless --threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import swinir  # noqa: E402
from swinir import autotile, memory  # noqa: E402
from swinir.tiling import plan_tiles  # noqa: E402

from bench.bench_memory import RSS, run_child  # noqa: E402

M_X2 = dict(task="classical_sr", scale=2, embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6)
FIXED = (128, 192, 256, 384)


def family_model(name: str) -> swinir.SwinIR:
    if name == "S":
        return swinir.load_model(swinir.default_model_path())
    torch.manual_seed(0)
    return swinir.SwinIR(swinir.SwinIRConfig(**M_X2)).eval()


def sweep(families: list[str], sides: list[int], repeats: int) -> None:
    cache = autotile.last_level_cache_bytes()
    print(f"threads {torch.get_num_threads()}, last-level cache {cache and cache >> 20} MiB")
    print("| network | input | activation MB | activation / cache | median s | s per Mpx |")
    print("|---|---|---|---|---|---|")
    for fam in families:
        model = family_model(fam)
        times: dict[int, list[float]] = {s: [] for s in sides}
        with torch.inference_mode():
            model(torch.rand(1, 3, 64, 64))
            for _ in range(repeats):
                for side in sides:
                    x = torch.rand(1, 3, side, side)
                    t = time.perf_counter()
                    model(x)
                    times[side].append(time.perf_counter() - t)
        for side in sides:
            act = side * side * model.config.embed_dim * 4
            med = statistics.median(times[side])
            ratio = f"{act / cache:.2f}" if cache else "?"
            print(f"| {fam} | {side}² | {act / 1e6:.1f} | {ratio} | {med:.2f} | {med / side ** 2 * 1e6:.1f} |",
                  flush=True)


def configurations(model: swinir.SwinIR, size: int) -> list[tuple[str, object]]:
    """(label, tile argument) for one image size: auto, the fixed tiles, and the whole image or, where that does
    not fit the memory budget, the memory-bound tile the rule chose before the cache cap."""
    cfg = model.config
    budget = memory.memory_budget(torch.device("cpu"))
    padded = -(-size // cfg.window_size) * cfg.window_size
    whole = autotile.memory_tile(cfg, padded, padded, budget, torch.float32)
    label = "whole image" if whole >= padded else f"memory-bound {whole} (auto before)"
    return [("auto", "auto"), *((f"tile {t}", t) for t in FIXED), (label, whole)]


def describe_plan(model: swinir.SwinIR, size: int, tile) -> str:
    cfg = model.config
    padded = -(-size // cfg.window_size) * cfg.window_size
    if tile == "auto":
        tile = autotile.auto_tile(cfg, padded, padded, memory.memory_budget(torch.device("cpu")), torch.float32,
                                  torch.device("cpu"))
    plan = plan_tiles(padded, padded, tile, 4 * cfg.window_size, cfg.window_size)
    return f"{len(plan)} x {plan.tile_height}²"


PEAK_CHILD = r"""
import json, sys, torch
sys.path.insert(0, {root!r})
import swinir
{rss}
torch.set_num_threads({threads})
model = swinir.load_model(swinir.default_model_path())
x = torch.rand(1, 3, {size}, {size})
base = rss()
swinir.restore(model, x, tile={tile!r})
print(json.dumps(dict(peak=rss(), base=base)))
"""


def compare(sizes: list[int], repeats: int, with_memory: bool, threads: int) -> None:
    model = family_model("S")
    cache = autotile.last_level_cache_bytes()
    print(f"threads {threads}, last-level cache {cache and cache >> 20} MiB, "
          f"auto cache cap {autotile.cache_tile(model.config, torch.float32, cache)} px")
    header = "| input | configuration | plan | median s | vs best |" + (" peak RSS GiB |" if with_memory else "")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for size in sizes:
        configs = configurations(model, size)
        times: dict[str, list[float]] = {label: [] for label, _ in configs}
        x = torch.rand(1, 3, size, size)
        for _ in range(repeats):
            for label, tile in configs:
                t = time.perf_counter()
                swinir.restore(model, x, tile=tile)
                times[label].append(time.perf_counter() - t)
        medians = {label: statistics.median(v) for label, v in times.items()}
        best = min(v for label, v in medians.items() if label != "auto")
        for label, tile in configs:
            row = (f"| {size}² | {label} | {describe_plan(model, size, tile)} | {medians[label]:.1f} | "
                   f"{medians[label] / best:.3f} |")
            if with_memory:
                r = run_child(PEAK_CHILD.format(root=str(ROOT), rss=RSS, threads=threads, size=size, tile=tile))
                row += f" {r['peak'] / 2**30:.2f} |"
            print(row, flush=True)
        print(f"| {size}² | **auto / best fixed** | | | **{medians['auto'] / best:.3f}** |" +
              (" |" if with_memory else ""), flush=True)


def compile_check(tile: int, repeats: int) -> None:
    model = family_model("S")
    x = torch.rand(1, 3, tile, tile)
    fn = torch.compile(model, dynamic=False)
    with torch.inference_mode():
        model(x)
        t = time.perf_counter()
        fn(x)
        compile_s = time.perf_counter() - t
        eager, comp = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            a = model(x)
            eager.append(time.perf_counter() - t)
            t = time.perf_counter()
            b = fn(x)
            comp.append(time.perf_counter() - t)
    e, c = statistics.median(eager), statistics.median(comp)
    print(json.dumps(dict(tile=tile, compile_seconds=round(compile_s, 1), eager_s=round(e, 3), compiled_s=round(c, 3),
                          speedup=round(e / c, 3), max_abs_diff=float((a - b).abs().max()))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--sweep", action="store_true")
    mode.add_argument("--compare", action="store_true")
    mode.add_argument("--compile", action="store_true")
    ap.add_argument("--family", nargs="+", default=["S", "M"], choices=["S", "M"])
    ap.add_argument("--sides", type=int, nargs="+", default=[128, 192, 256, 384, 512, 768])
    ap.add_argument("--sizes", type=int, nargs="+", default=[768, 1024, 2048])
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory", action="store_true", help="with --compare: peak RSS of each configuration")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.sweep:
        sweep(args.family, args.sides, args.repeats)
    elif args.compare:
        compare(args.sizes, args.repeats, args.memory, args.threads)
    else:
        compile_check(args.tile, args.repeats)


if __name__ == "__main__":
    main()

"""CPU speed by tile size: the measurements behind the engine's auto tile (`swinir.engine.auto_tile`) and the check of
its rule.

    python -m bench.bench_tiles --sweep [--family S M] [--sides 128 192 256 384 512 768] [--raw]
        time per pixel of one whole-image pass by input side (interleaved, medians), through the engine or, with
        --raw, the bare forward pass: whether smaller inputs run faster per pixel
    python -m bench.bench_tiles --compare [--sizes 768 1024 2048] [--fixed 128 192 256 384] [--repeats 3]
                                [--memory --baseline-root DIR]
        the default model on size² images: auto against fixed tiles 128/192/256/384 and the whole image (where the
        whole image does not fit the memory budget: the largest tile that does), interleaved, medians, ratios;
        with --memory, the peak RSS of auto in a fresh process, and of auto in another checkout (--baseline-root,
        e.g. another commit's auto)
    python -m bench.bench_tiles --compile [--tile 256]
        torch.compile against eager at one fixed tile size: compile time and median seconds per tile

Run with the machine otherwise idle (training paused with SIGSTOP); 2 threads unless --threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

import swinir  # noqa: E402
from swinir import memory  # noqa: E402
from swinir.budget import memory_budget  # noqa: E402
from swinir.engine import auto_tile  # noqa: E402
from swinir.tiling import plan_tiles  # noqa: E402

from testkit.peak_memory import RSS, run_child  # noqa: E402

M_X2 = dict(task="classical_sr", scale=2, embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6)
FIXED = (128, 192, 256, 384)


def family_model(name: str) -> swinir.SwinIR:
    if name == "S":
        return swinir.load_model(swinir.default_model_path())
    torch.manual_seed(0)
    return swinir.SwinIR(swinir.SwinIRConfig(**M_X2)).eval()


def sweep(families: list[str], sides: list[int], repeats: int, raw: bool) -> None:
    print(f"threads {torch.get_num_threads()}, last-level cache {last_level_cache_mib()} MiB, "
          f"{'bare forward passes' if raw else 'whole-image engine runs'}")
    print("| network | input | activation MB | median s | s per Mpx |")
    print("|---|---|---|---|---|")
    for fam in families:
        model = family_model(fam)
        times: dict[int, list[float]] = {s: [] for s in sides}
        # Through the engine as one whole-image pass (so with its CPU allocator setting), or with --raw the bare
        # forward pass.
        run = (lambda x: model(x)) if raw else (lambda x: swinir.restore(model, x, tile=None, memory_budget=1 << 40))
        with torch.inference_mode():
            run(torch.rand(1, 3, 64, 64))
            for _ in range(repeats):
                for side in sides:
                    x = torch.rand(1, 3, side, side)
                    t = time.perf_counter()
                    run(x)
                    times[side].append(time.perf_counter() - t)
        for side in sides:
            act = side * side * model.config.embed_dim * 4
            med = statistics.median(times[side])
            print(f"| {fam} | {side}² | {act / 1e6:.1f} | {med:.2f} | {med / side ** 2 * 1e6:.1f} |", flush=True)


def last_level_cache_mib() -> int | None:
    llc = memory.last_level_cache_bytes()
    return None if llc is None else llc >> 20


def configurations(model: swinir.SwinIR, size: int, fixed: tuple[int, ...] = FIXED) -> list[tuple[str, object]]:
    """(label, tile argument) for one image size: auto, the fixed tiles, and the whole image or, where that does
    not fit the memory budget, the largest tile that does."""
    cfg = model.config
    padded = -(-size // cfg.window_size) * cfg.window_size
    budget = memory_budget(torch.device("cpu"))
    if memory.estimate_bytes(cfg, padded * padded) <= budget:
        last = ("whole image", padded)
    else:
        largest = int(memory.largest_tile_pixels(cfg, budget) ** 0.5) // cfg.window_size * cfg.window_size
        last = (f"largest that fits memory ({largest})", largest)
    return [("auto", "auto"), *((f"tile {t}", t) for t in fixed), last]


def describe_plan(model: swinir.SwinIR, size: int, tile) -> str:
    cfg = model.config
    padded = -(-size // cfg.window_size) * cfg.window_size
    if tile == "auto":
        cpu = torch.device("cpu")
        budget = memory.estimate_budget(memory_budget(cpu), cpu)  # as swinir.restore sizes it
        tile = auto_tile(cfg, padded, padded, budget, torch.float32)
    plan = plan_tiles(padded, padded, tile, 4 * cfg.window_size, cfg.window_size)
    return f"{len(plan)} x {plan.tile_height}²"


PEAK_CHILD = r"""
import json, sys, torch
import swinir
{rss}
torch.set_num_threads({threads})
model = swinir.load_model(swinir.default_model_path())
x = torch.rand(1, 3, {size}, {size})
base = rss()
swinir.restore(model, x, tile={tile!r})
print(json.dumps(dict(peak=rss(), base=base)))
"""


def compare(sizes: list[int], repeats: int, with_memory: bool, threads: int, large_repeats: int | None,
            baseline: Path | None, fixed: tuple[int, ...] = FIXED) -> None:
    model = family_model("S")
    from swinir import allocator

    hugepages = "on" if allocator.hugepages_in_effect() else "off"
    print(f"threads {threads}, last-level cache {last_level_cache_mib()} MiB, huge-page blocks {hugepages}")
    header = "| input | configuration | plan | median s | vs best |" + (" peak RSS GiB |" if with_memory else "")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for size in sizes:
        configs = configurations(model, size, fixed)
        times: dict[str, list[float]] = {label: [] for label, _ in configs}
        x = torch.rand(1, 3, size, size)
        for _ in range(repeats if size <= 1024 or large_repeats is None else large_repeats):
            for label, tile in configs:
                t = time.perf_counter()
                swinir.restore(model, x, tile=tile)
                times[label].append(time.perf_counter() - t)
        medians = {label: statistics.median(v) for label, v in times.items()}
        best = min(v for label, v in medians.items() if label != "auto")
        for label, tile in configs:
            row = (f"| {size}² | {label} | {describe_plan(model, size, tile)} | {medians[label]:.1f} | "
                   f"{medians[label] / best:.3f} |")
            if with_memory and label == "auto":
                r = run_child(PEAK_CHILD.format(rss=RSS, threads=threads, size=size, tile=tile))
                row += f" {r['peak'] / 2**30:.2f} |"
            elif with_memory:
                row += " |"
            print(row, flush=True)
        if with_memory and baseline is not None:
            r = run_child(PEAK_CHILD.format(rss=RSS, threads=threads, size=size, tile="auto"), cwd=baseline)
            print(f"| {size}² | auto of {baseline} (peak only) | | | | {r['peak'] / 2**30:.2f} |", flush=True)
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
    ap.add_argument("--large-repeats", type=int, default=None,
                    help="with --compare: repeats for sizes above 1024 (default: --repeats)")
    ap.add_argument("--fixed", type=int, nargs="+", default=list(FIXED), help="with --compare: the fixed tiles")
    ap.add_argument("--memory", action="store_true", help="with --compare: peak RSS of auto")
    ap.add_argument("--baseline-root", type=Path, help="with --memory: also auto's peak RSS in this other checkout")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--raw", action="store_true", help="with --sweep: bare forward passes instead of the engine")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.sweep:
        sweep(args.family, args.sides, args.repeats, args.raw)
    elif args.compare:
        compare(args.sizes, args.repeats, args.memory, args.threads, args.large_repeats, args.baseline_root,
                tuple(args.fixed))
    else:
        compile_check(args.tile, args.repeats)


if __name__ == "__main__":
    main()

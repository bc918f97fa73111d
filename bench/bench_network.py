"""Our SwinIR network vs spandrel's (the port inside ComfyUI) on the same weights: time, peak memory, outputs.

Timing is interleaved (ours, spandrel, ours, ...) in one process and reported as medians and ratios; peak RSS of
one forward pass (RSS sampled every 2 ms, minus the RSS before it) is measured with --memory-only, in a fresh child
process per path, so that neither path inherits the other's heap.

    python -m bench.bench_network [--sizes 64 128 256] [--repeats 5] [--models M S]
    python -m bench.bench_network --memory-only
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


import swinir  # noqa: E402

CONFIGS = {
    "M": dict(upscale=2, in_chans=3, img_size=64, window_size=8, img_range=1.0, depths=[6] * 6, embed_dim=180,
              num_heads=[6] * 6, mlp_ratio=2, upsampler="pixelshuffle", resi_connection="1conv"),
    "S": dict(upscale=2, in_chans=3, img_size=64, window_size=8, img_range=1.0, depths=[6] * 4, embed_dim=60,
              num_heads=[6] * 4, mlp_ratio=2, upsampler="pixelshuffledirect", resi_connection="1conv"),
}


def build(variant: str, seed: int = 0):
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR as RefSwinIR

    torch.manual_seed(seed)
    ref = RefSwinIR(**CONFIGS[variant]).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ours = swinir.model_from_state_dict(ref.state_dict(), f"bench-{variant}")
    return ours, ref


CHILD = """
import sys, threading, time, torch
from bench.bench_network import build
ours, ref = build({variant!r})
model = ref if {path!r} == "spandrel" else ours
if {path!r} == "ours-sdpa":  # the blocks on scaled_dot_product_attention instead of attend_cpu
    import swinir.network
    swinir.network._cpu_fast_path = lambda x: False
del ours, ref
import gc; gc.collect()
x = torch.rand(1, 3, {size}, {size})
page = __import__("os").sysconf("SC_PAGE_SIZE")
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
with torch.inference_mode():
    model(torch.rand(1, 3, 16, 16))  # load kernels outside the measured window
    base = peak = rss()
    done = False
    def sample():
        global peak
        while not done:
            peak = max(peak, rss())
            time.sleep(0.002)
    t = threading.Thread(target=sample); t.start()
    model(x)
    done = True; t.join()
print((peak - base) / 2**20)
"""


def child_peak(variant: str, path: str, size: int) -> float:
    """Peak RSS growth (MiB) during one forward pass, sampled every 2 ms in a fresh process."""
    code = CHILD.format(variant=variant, path=path, size=size)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--models", nargs="+", default=["M", "S"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--memory-only", action="store_true", help="skip timing; only peak memory")
    args = ap.parse_args()
    rows = []
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| model | input | ours median s | spandrel median s | speed-up | ours through the engine s | engine speed-up | "
          "max abs diff | peak RSS ours MiB | peak RSS spandrel MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for variant in args.models:
        ours, ref = (None, None) if args.memory_only else build(variant)
        for size in args.sizes:
            if args.memory_only:
                # Children only: a parent that has run big forward passes keeps their heap, and the two together
                # can exhaust the machine.
                row = dict(model=f"SwinIR-{variant} x2", size=size, rss_ours=child_peak(variant, "ours", size),
                           rss_ours_sdpa=child_peak(variant, "ours-sdpa", size),
                           rss_spandrel=child_peak(variant, "spandrel", size))
                rows.append(row)
                print(f"| SwinIR-{variant} x2 | {size}² | | | | | | | {row['rss_ours']:.0f} "
                      f"(SDPA attention: {row['rss_ours_sdpa']:.0f}) | {row['rss_spandrel']:.0f} |", flush=True)
                continue
            x = torch.rand(1, 3, size, size)
            times = {"ours": [], "spandrel": [], "engine": []}
            # Our whole path as users run it: swinir.restore on the whole image (with its CPU allocator setting).
            engine = lambda x: swinir.restore(ours, x, tile=None, memory_budget=1 << 40)  # noqa: E731
            with torch.inference_mode():
                a, b = ours(x), ref(x)  # warm-up (caches, allocator)
                engine(x)
                diff = (a - b).abs().max().item()
                for _ in range(args.repeats):
                    for name, m in (("ours", ours), ("spandrel", ref), ("engine", engine)):
                        t = time.perf_counter()
                        m(x)
                        times[name].append(time.perf_counter() - t)
            mo, ms, me = (statistics.median(times[k]) for k in ("ours", "spandrel", "engine"))
            row = dict(model=f"SwinIR-{variant} x2", size=size, ours=mo, spandrel=ms, speedup=ms / mo, engine=me,
                       engine_speedup=ms / me, diff=diff, times=times)
            rows.append(row)
            print(f"| SwinIR-{variant} x2 | {size}² | {mo:.3f} | {ms:.3f} | {ms / mo:.2f}× | {me:.3f} | {ms / me:.2f}× | "
                  f"{diff:.1e} | | |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

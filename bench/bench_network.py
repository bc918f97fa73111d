"""Our SwinIR network vs spandrel's (the port inside ComfyUI) on the same weights: time, peak memory, outputs.

Timing is interleaved (ours, spandrel, ours, ...) in one process and reported as medians and ratios; peak RSS of
one forward pass is measured in a fresh child process per path so that neither path inherits the other's heap.

    python bench/bench_network.py [--sizes 64 128 256] [--repeats 5] [--models M S]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import swinir  # noqa: E402
from swinir.train import LIGHTWEIGHT_S  # noqa: E402

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


def child_peak(variant: str, path: str, size: int) -> float:
    """Peak RSS growth (MiB) of one forward pass, in a fresh process."""
    code = (
        "import sys, resource, torch; sys.path.insert(0, %r); from bench.bench_network import build; "
        "ours, ref = build(%r); m = ours if %r == 'ours' else ref; x = torch.rand(1, 3, %d, %d); "
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "torch.inference_mode().__enter__(); m(x); "
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)"
    ) % (str(Path(__file__).resolve().parents[1]), variant, path, size, size)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--models", nargs="+", default=["M", "S"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| model | input | ours median s | spandrel median s | speed-up | max abs diff | peak RSS ours MiB | peak RSS spandrel MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for variant in args.models:
        ours, ref = build(variant)
        for size in args.sizes:
            x = torch.rand(1, 3, size, size)
            times = {"ours": [], "spandrel": []}
            with torch.inference_mode():
                a, b = ours(x), ref(x)  # warm-up (caches, allocator)
                diff = (a - b).abs().max().item()
                for _ in range(args.repeats):
                    for name, m in (("ours", ours), ("spandrel", ref)):
                        t = time.perf_counter()
                        m(x)
                        times[name].append(time.perf_counter() - t)
            mo, ms = statistics.median(times["ours"]), statistics.median(times["spandrel"])
            peak_o, peak_s = child_peak(variant, "ours", size), child_peak(variant, "spandrel", size)
            row = dict(model=f"SwinIR-{variant} x2", size=size, ours=mo, spandrel=ms, speedup=ms / mo, diff=diff,
                       rss_ours=peak_o, rss_spandrel=peak_s, times=times)
            rows.append(row)
            print(f"| SwinIR-{variant} x2 | {size}² | {mo:.3f} | {ms:.3f} | {ms / mo:.2f}× | {diff:.1e} | "
                  f"{peak_o:.0f} | {peak_s:.0f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

"""SwinIR on the CPU against this machine's matmul rate, and against spandrel (what ComfyUI's core node runs).

One process, everything interleaved round by round, medians: an fp32 matmul (2048², all threads) gives the rate
the network is measured against; each model runs through our path, through our path with the CPU blocks on
`scaled_dot_product_attention` (the path of training and autocast) instead of `attend_cpu`, and through
spandrel's port of the official network with the same weights. GFLOP/s counts the official network's
multiply-adds (torch's FlopCounterMode on spandrel's network at 64², scaled by the pixel count: every layer's
work is linear in the pixels of a window-multiple input), so padding and layout tricks of ours earn nothing.

    python -m bench.bench_cpu_speed                       # shipped x2 and blind denoiser, M x2; 256²
    python -m bench.bench_cpu_speed --sizes 1024 --no-spandrel --repeats 2   # 1024² through the engine
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import swinir
from swinir import network
from swinir.model_ref import default_model_path
from testkit.reference import RefSwinIR, build_reference, max_diff

MATMUL_SIZE = 2048


def _reference_for(model: swinir.SwinIR) -> torch.nn.Module:
    """spandrel's network with `model`'s weights."""
    c = model.config
    ref = RefSwinIR(upscale=c.scale, in_chans=c.in_chans, img_size=64, window_size=c.window_size,
                    img_range=c.img_range, depths=list(c.depths), embed_dim=c.embed_dim, num_heads=list(c.num_heads),
                    mlp_ratio=c.mlp_ratio, upsampler=c.upsampler, resi_connection=c.resi_connection)
    missing, unexpected = ref.load_state_dict(model.state_dict(), strict=False)
    # spandrel keeps buffers we recompute (position index, shift masks); every parameter must come from `model`.
    assert not unexpected and all(k.endswith(("relative_position_index", "attn_mask")) for k in missing), missing
    return ref.eval().requires_grad_(False)


def _shipped(task: str) -> swinir.SwinIR:
    return swinir.load_model(default_model_path(task))


def _random_m() -> swinir.SwinIR:
    ref = build_reference(upscale=2, in_chans=3, img_size=64, window_size=8, img_range=1.0, depths=[6] * 6,
                          embed_dim=180, num_heads=[6] * 6, mlp_ratio=2, upsampler="pixelshuffle",
                          resi_connection="1conv", seed=0)
    return swinir.model_from_state_dict(ref.state_dict(), "bench-M-x2")


MODELS = {
    "x2": ("shipped SwinIR-S x2 default", lambda: _shipped("sr")),
    "denoise": ("shipped SwinIR-S blind denoiser", lambda: _shipped("denoise")),
    "M": ("SwinIR-M x2 (random weights)", _random_m),
}


def flops_per_pixel(ref: torch.nn.Module, in_chans: int) -> float:
    """Floating-point operations of the official network per input pixel (a multiply-add is two)."""
    x = torch.rand(1, in_chans, 64, 64)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        ref(x)
    return counter.get_total_flops() / (64 * 64)


def matmul_seconds() -> float:
    a = torch.rand(MATMUL_SIZE, MATMUL_SIZE)
    t = time.perf_counter()
    a @ a
    return time.perf_counter() - t


def timed(fn, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    t = time.perf_counter()
    y = fn(x)
    return time.perf_counter() - t, y


def sdpa_path(fn):
    """`fn` with the CPU blocks on the fused-kernel path (`scaled_dot_product_attention`)."""

    def run(x: torch.Tensor) -> torch.Tensor:
        original = network._cpu_fast_path
        network._cpu_fast_path = lambda x: False
        try:
            return fn(x)
        finally:
            network._cpu_fast_path = original

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["x2", "denoise", "M"], choices=sorted(MODELS))
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-spandrel", action="store_true", help="skip spandrel (its 1024² pass takes minutes)")
    ap.add_argument("--bare", action="store_true", help="time the bare forward pass too (not only the engine)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| model | input | path | median s | GFLOP/s | share of matmul rate | spandrel / path | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    with torch.inference_mode():
        matmul_seconds()
        for key in args.models:
            label, make = MODELS[key]
            model = make()
            ref = _reference_for(model)
            per_pixel = flops_per_pixel(ref, model.config.in_chans)
            engine = lambda x, m=model: swinir.restore(m, x, tile="auto")  # noqa: E731
            paths = {"ours (engine)": engine, "ours, SDPA attention (engine)": sdpa_path(engine)}
            if args.bare:
                paths |= {"ours (bare forward)": model, "ours, SDPA attention (bare forward)": sdpa_path(model)}
            if not args.no_spandrel:
                paths["spandrel"] = ref
            for size in args.sizes:
                x = torch.rand(1, model.config.in_chans, size, size)
                flops = per_pixel * size * size
                times: dict[str, list[float]] = {name: [] for name in paths}
                matmul: list[float] = []
                outputs = {name: fn(x) for name, fn in paths.items()}  # warm-up: caches, allocator, kernels
                want = outputs.get("spandrel", outputs["ours, SDPA attention (engine)"])
                for _ in range(args.repeats):
                    for name, fn in paths.items():
                        matmul.append(matmul_seconds())
                        times[name].append(timed(fn, x)[0])
                rate = 2 * MATMUL_SIZE**3 / statistics.median(matmul) / 1e9
                spandrel = statistics.median(times["spandrel"]) if "spandrel" in times else None
                print(f"| {label} | {size}² | fp32 matmul {MATMUL_SIZE}² | {statistics.median(matmul):.3f} | "
                      f"{rate:.1f} | 1.00 | | |", flush=True)
                for name in paths:
                    med = statistics.median(times[name])
                    gflops = flops / med / 1e9
                    ratio = f"{spandrel / med:.2f}×" if spandrel else ""
                    diff = max_diff(outputs[name].clamp(0, 1), want.clamp(0, 1))
                    rows.append(dict(model=key, size=size, path=name, median=med, times=times[name], gflops=gflops,
                                     share=gflops / rate, matmul_gflops=rate, diff=diff, tflop=flops / 1e12))
                    print(f"| {label} | {size}² | {name} | {med:.3f} | {gflops:.1f} | {gflops / rate:.2f} | {ratio} | "
                          f"{diff:.1e} |", flush=True)
            del model, ref
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

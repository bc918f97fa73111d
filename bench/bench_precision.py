"""CPU speed of the engine by precision: fp32 against bf16 and fp16 autocast, on the default model.

Whether reduced precision pays on a CPU depends on its units: with AMX or AVX-512 BF16/FP16, oneDNN runs bf16/fp16
natively; without them (AVX2 only) PyTorch emulates them and they are slower than fp32, which is why the engine says so
(`precision.warn_if_emulated` logs it). One `swinir.restore` per precision, interleaved in one process, medians, as ratios to
fp32, with oneDNN's own verdict on the CPU's units.

    python -m bench.bench_precision [--size 128] [--repeats 3] [--threads 2]

Run with the machine otherwise idle (training paused).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time

import torch

import swinir

from swinir.precision import PRECISIONS, cpu_has_native  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128, help="input side in pixels")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=list(PRECISIONS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("swinir.engine").setLevel(logging.ERROR)  # the emulation notice is what this measures
    model = swinir.load_model(swinir.default_model_path()).eval()
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    native = {p: cpu_has_native(PRECISIONS[p]) for p in args.precisions}
    print(f"# {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, "
          f"native: {', '.join(f'{p} {v}' for p, v in native.items())}")
    times: dict[str, list[float]] = {p: [] for p in args.precisions}
    for p in args.precisions:  # warm-up: first-call costs (kernels, caches) stay out of the medians
        swinir.restore(model, x, precision=p)
    for _ in range(args.repeats):
        for p in args.precisions:
            start = time.perf_counter()
            swinir.restore(model, x, precision=p)
            times[p].append(time.perf_counter() - start)
    base = statistics.median(times["fp32"]) if "fp32" in times else None
    print(f"| precision | native units | median s ({args.size}², x2 default) | time / fp32 |")
    print("|---|---|---|---|")
    for p, ts in times.items():
        med = statistics.median(ts)
        ratio = f"{med / base:.2f}" if base else "-"
        print(f"| {p} | {'yes' if native[p] else 'no'} | {med:.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()

"""CPU speed of inference by the size of the chunks the transformer blocks run over (`memory.block_chunk_bytes`).

Each block runs over chunks of windows in turn so that its temporaries stay in the cache; this times one forward
pass per chunk size against whole-image blocks (one chunk per shift group), interleaved in one process, medians,
as ratios to whole-image blocks. The rule's own choice for this CPU (from its last-level cache) is marked.

    python -m bench.bench_chunks [--cases S-denoise S-x2 M-x2] [--chunks-mib 0.5 1 2 4 8] [--repeats 3]

Run with the machine otherwise idle (training paused).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import swinir

from bench.bench_network import build  # noqa: E402
from swinir import memory  # noqa: E402

WHOLE = 1 << 40  # bytes: every shift group is one chunk


def cases() -> dict:
    """name -> (model, input side h, w): the CI mark test's case, the default model, and SwinIR-M x2."""
    return {
        "S-denoise": (lambda: swinir.load_model(swinir.default_model_path("denoise")), (321, 481)),
        "S-x2": (lambda: swinir.load_model(swinir.default_model_path()), (512, 512)),
        "M-x2": (lambda: build("M")[0], (256, 256)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(cases()), choices=list(cases()))
    ap.add_argument("--chunks-mib", type=float, nargs="+", default=[0.5, 1, 2, 4, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chosen = memory.block_chunk_bytes("cpu")
    settings = {"whole": WHOLE, **{f"{m:g} MiB": int(m * (1 << 20)) for m in args.chunks_mib}}
    print(f"# {platform.processor() or platform.machine()}, last-level cache {memory.last_level_cache_bytes()} B, "
          f"rule's chunk {chosen / (1 << 20):g} MiB, {args.threads} threads, torch {torch.__version__}")
    print("| network | input | chunk | median s | whole-image blocks / this |")
    print("|---|---|---|---|---|")
    original = memory.block_chunk_bytes
    try:
        for name in args.cases:
            make, (h, w) = cases()[name]
            model = make().eval()
            x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
            times: dict[str, list[float]] = {k: [] for k in settings}
            with torch.inference_mode():
                for rep in range(args.repeats + 1):  # the first round warms the caches up and is not counted
                    for key, size in settings.items():
                        memory.block_chunk_bytes = lambda device_type, size=size: size
                        t = time.perf_counter()
                        model(x)
                        if rep:
                            times[key].append(time.perf_counter() - t)
            whole = statistics.median(times["whole"])
            for key, size in settings.items():
                median = statistics.median(times[key])
                mark = " (rule)" if size == chosen else ""
                print(f"| {name} | {h}×{w} | {key}{mark} | {median:.2f} | {whole / median:.2f} |", flush=True)
    finally:
        memory.block_chunk_bytes = original


if __name__ == "__main__":
    main()

"""The full soak of the real ComfyUI 0.3.75 server (issue 14, part 2); tests/comfy/test_soak.py is its light run.

    .venv/bin/python bench/bench_soak.py [--prompts 200] [--warmup 30] [--max-side 1024] [--sr-model default|tiny]
                                         [--max-minutes 120] [--seed 0]

Starts its own server (the pack linked in, the tests' random-weight models in a fresh base directory, on the CPU,
127.0.0.1), then runs tests/comfy/soak.py's mix: super-resolution (the pack's x2 default model, or the tests' tiny
random x2 with --sr-model tiny), denoising and JPEG cleanup (random-weight models under official names), sizes
1..max-side px, batches of 1-3, tiled and whole, fp32 and bf16, wrong-task models, interruptions (the default
model, 256 px in 32 px tiles). Prints the figures for bench/RESULTS.md: prompts, outcomes and failures by kind,
the server's RSS at start, after the warm-up and after the soak, and temporary files left. Exit status 1 when a
prompt failed, memory grew by more than 10 %, or a temporary file was left.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from testkit.comfy_harness import COMFY_DIR, DEFAULT_ENTRY, SR_NAME, start_server
from testkit.soak import SoakConfig, run_soak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=30, help="prompts of the same mix before the memory baseline")
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--sr-model", choices=("default", "tiny"), default="default")
    ap.add_argument("--interrupt-side", type=int, default=256)
    ap.add_argument("--max-minutes", type=float, default=120.0, help="stop queueing soak prompts after this long")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (COMFY_DIR / "main.py").is_file():
        print(f"ComfyUI is not installed at {COMFY_DIR}; run scripts/get-comfyui.sh", file=sys.stderr)
        return 2
    cfg = SoakConfig(
        prompts=args.prompts, warmup=args.warmup, max_side=args.max_side,
        sr_model=DEFAULT_ENTRY if args.sr_model == "default" else SR_NAME, interrupt_model=DEFAULT_ENTRY,
        interrupt_side=args.interrupt_side, seed=args.seed, max_minutes=args.max_minutes,
    )
    base = Path(tempfile.mkdtemp(prefix="swinir-soak-"))
    t0 = time.monotonic()
    server = start_server(base, "bench-soak")
    print(f"server up in {time.monotonic() - t0:.0f} s (pid {server.proc.pid}, log {server.log_path})", flush=True)
    try:
        report = run_soak(server, cfg, log=lambda line: print(line, flush=True))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"config: {args.prompts} prompts, warm-up {args.warmup}, sides 1..{args.max_side} px, SR model "
          f"{cfg.sr_model}, interrupts {args.interrupt_side} px with {DEFAULT_ENTRY}, seed {args.seed}")
    print(report.text())
    ok = not report.failures and not report.temp_files and report.rss_after <= 1.10 * report.rss_warm
    print("PASS" if ok else "FAIL", "(every prompt as expected, memory within 10 % of the warm-up, no temp file)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

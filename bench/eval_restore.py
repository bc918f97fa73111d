"""Score denoising and JPEG-artifact removal models on the standard test sets, the official way.

    python -m bench.eval_restore --task denoise [--model PATH] [--sets CBSD68 Kodak24 McMaster] [--levels 10 15 25 35 50]
    python -m bench.eval_restore --task jpeg [--model PATH] [--sets LIVE1 classic5] [--levels 10 20 30 40 60 80]

Denoise: Gaussian noise added in float to the clean image with numpy's legacy generator seeded 0 for every image,
neither rounded nor clipped (as SwinIR's main_test_swinir.py does). JPEG: the clean image through Pillow's encoder
at the quality (4:2:0 chroma for colour images; gray images such as classic5 are encoded as gray and go through the
colour model as gray, i.e. luma only). PSNR over all channels (RGB for colour images) of the uint8 output against
the clean uint8 image, border 0; the JPEG table also scores the JPEG input itself. Default model: the pack's blind
default of the task. Prints one Markdown row per (set, level); the scoring is swinir.training.evaluate's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import swinir
from swinir.training import evaluate
from testkit.data import DATA


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("denoise", "jpeg"), required=True)
    ap.add_argument("--model", help="checkpoint (default: the pack's blind default of the task)")
    ap.add_argument("--sets", nargs="+")
    ap.add_argument("--levels", type=int, nargs="+", help="noise sigmas (0-255 scale) or JPEG qualities")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = swinir.load_model(args.model or swinir.default_model_path(args.task))
    sets = args.sets or (evaluate.DENOISE_SETS if args.task == "denoise" else evaluate.JPEG_SETS)
    levels = args.levels or (evaluate.DENOISE_LEVELS if args.task == "denoise" else evaluate.JPEG_LEVELS)
    what = "sigma" if args.task == "denoise" else "quality"
    print(f"model: {swinir.describe(model.config)}")
    print(f"| set | {what} | input PSNR dB | model PSNR dB | gain dB |")
    print("|---|---|---|---|---|")
    for name in sets:
        for level in levels:
            out, inp, n = evaluate.score(model, args.data / name, args.task, level)
            print(f"| {name} ({n}) | {level} | {inp:.2f} | {out:.2f} | {out - inp:+.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

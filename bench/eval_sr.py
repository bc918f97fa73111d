"""Evaluate bicubic (and optionally a SwinIR model) on classic SR test sets.

Usage, from the repository root:
    python -m bench.eval_sr --model PATH_OR_none --scale 2 --sets Set5 Set14 [--data DIR]

Expects ``DIR/<set>/HR/<name>.png`` and ``DIR/<set>/LR_bicubic/X<s>/<name>x<s>.png``.
Prints one Markdown table row per (set, method): PSNR-Y / SSIM-Y averaged over
images, with ``crop_border = scale`` as in the official SwinIR evaluation (swinir.training.evaluate).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from swinir.training import evaluate
from testkit.data import DATA


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="none", help="model weights path, or 'none' for bicubic only")
    ap.add_argument("--scale", type=int, default=2, choices=(2, 3, 4, 8))
    ap.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument(
        "--gray-rgb",
        action="store_true",
        help="treat gray images as RGB in the metric too (SwinIR's test script reads "
        "everything with cv2.IMREAD_COLOR); default scores gray images on their own values",
    )
    args = ap.parse_args(argv)

    methods: list[tuple[str, evaluate.Upscaler]] = [("bicubic", evaluate.bicubic)]
    if args.model.lower() != "none":
        methods.append((Path(args.model).name, evaluate.model_upscaler(args.model)))

    print("| set | scale | method | PSNR-Y | SSIM-Y |")
    print("|---|---|---|---|---|")
    for set_name in args.sets:
        for name, fn in methods:
            p, s, n = evaluate.evaluate_set(args.data / set_name, args.scale, fn, args.gray_rgb)
            print(f"| {set_name} ({n}) | x{args.scale} | {name} | {p:.2f} | {s:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

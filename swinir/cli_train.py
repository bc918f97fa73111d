"""`python -m swinir train`: train a SwinIR-S super-resolution model on a folder of images."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .train import TrainSettings, export, train


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the lightweight SwinIR-S SR model on folders of images (resumable)",
        description="Train the official lightweight SwinIR-S configuration with MATLAB-bicubic degradation, "
        "L1 loss and Adam. Re-running with the same --out resumes from its state.pt.",
    )
    p.add_argument("data", nargs="+", type=Path, help="folders of high-resolution training images")
    p.add_argument("--out", type=Path, required=True, help="folder for state.pt (resume point) and train.log")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4), help="upscaling factor (default 2)")
    p.add_argument("--iterations", type=int, default=100_000, help="total steps to reach (default 100000)")
    p.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    p.add_argument("--patch", type=int, default=48, help="low-resolution crop size (default 48)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate after warm-up (default 2e-4)")
    p.add_argument("--save-every", type=int, default=100, help="steps between state saves (default 100)")
    p.add_argument("--eval-every", type=int, default=500, help="steps between evaluations (default 500)")
    p.add_argument("--eval-dir", type=Path, help="SR test set with HR/ and LR_bicubic/X<s>/ to monitor PSNR-Y")
    p.add_argument("--export", type=Path,
                   help="instead of training, write the EMA weights of --out/state.pt to this .safetensors file "
                   "(the data folders are then ignored: the state records those it was trained on)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.export:
        export(args.out / "state.pt", args.export)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(args.out / "train.log"), logging.StreamHandler()],
    )
    settings = TrainSettings(
        data=args.data, out=args.out, scale=args.scale, iterations=args.iterations, batch=args.batch,
        patch=args.patch, lr=args.lr, save_every=args.save_every, eval_every=args.eval_every, eval_dir=args.eval_dir,
    )
    train(settings)
    return 0

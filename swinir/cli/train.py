"""`python -m swinir train`: train a SwinIR-S model (x2-x4 SR, blind denoise or blind JPEG) on folders of images."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..tasks import FAMILIES


def _quality_range(value: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in value.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--quality-range takes LOW-HIGH, e.g. 10-90, not {value!r}") from None
    if not 1 <= low <= high <= 100:
        raise argparse.ArgumentTypeError(f"--quality-range {value}: need 1 <= LOW <= HIGH <= 100")
    return low, high


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a lightweight SwinIR-S model (SR, blind denoise or blind JPEG) on folders of images (resumable)",
        description="Train the official lightweight SwinIR-S body with L1 loss and Adam on clean images, with the "
        "degradation of --task: sr (MATLAB bicubic), denoise (a random Gaussian sigma per patch) or jpeg (a random "
        "Pillow JPEG quality per patch, 4:2:0). Re-running with the same --out resumes from its state.pt.",
    )
    p.add_argument("--task", choices=FAMILIES, default="sr",
                   help="sr (default): x--scale super-resolution; denoise: one blind colour denoiser for sigma "
                   "0..--sigma-max; jpeg: one blind colour JPEG-artifact remover for --quality-range")
    p.add_argument("data", nargs="+", type=Path, help="folders of high-resolution training images")
    p.add_argument("--out", type=Path, required=True, help="folder for state.pt (resume point) and train.log")
    p.add_argument("--scale", type=int, default=2, choices=(2, 3, 4), help="upscaling factor (default 2)")
    p.add_argument("--iterations", type=int, default=100_000, help="total steps to reach (default 100000)")
    p.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    p.add_argument("--patch", type=int, default=48, help="low-resolution crop size (default 48)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate after warm-up (default 2e-4)")
    p.add_argument("--save-every", type=int, default=100, help="steps between state saves (default 100)")
    p.add_argument("--eval-every", type=int, default=500, help="steps between evaluations (default 500)")
    p.add_argument("--sigma-max", type=int, default=50, help="denoise: highest noise sigma, 0-255 scale (default 50)")
    p.add_argument("--quality-range", type=_quality_range, default=(10, 90),
                   help="jpeg: JPEG qualities to train on, LOW-HIGH (default 10-90)")
    # Checked by the trainer (TrainSettings): the parser does not import the training package.
    p.add_argument("--quality-sampling", default="log",
                   help="jpeg: how a patch's quality is drawn from the range; log (default): as often as 1/quality, so "
                   "q 10-20 get as many patches as q 20-40 and q 40-80; uniform: every quality equally often")
    p.add_argument("--init", type=Path,
                   help="start a new run from these weights (a state.pt or a .safetensors of the same network size), "
                   "e.g. the JPEG model from the denoiser; ignored when --out already has a state")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: mixed precision on the CPU (weights and optimizer stay fp32); faster where the CPU has "
                   "AMX/AVX-512 bf16 units")
    p.add_argument("--eval-dir", type=Path,
                   help="monitoring only: for sr an SR test set with HR/ and LR_bicubic/X<s>/ (PSNR-Y); for denoise and "
                   "jpeg a folder of clean images (RGB PSNR at sigma 25 / quality 20)")
    p.add_argument("--export", type=Path,
                   help="instead of training, write the EMA weights of --out/state.pt to this .safetensors file "
                   "(the data folders are then ignored: the state records those it was trained on)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: `python -m swinir restore` builds this parser too and must not load the training code.
    from ..training.trainer import TrainSettings, export, train

    if args.export:
        export(args.out / "state.pt", args.export)
        return 0
    # Settings first: a wrong option is refused before the output folder and its log exist.
    settings = TrainSettings(
        data=args.data, out=args.out, scale=args.scale, iterations=args.iterations, batch=args.batch,
        patch=args.patch, lr=args.lr, save_every=args.save_every, eval_every=args.eval_every, eval_dir=args.eval_dir,
        task=args.task, sigma_max=args.sigma_max, quality_range=args.quality_range,
        quality_sampling=args.quality_sampling, init=args.init,
        precision=args.precision,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(args.out / "train.log"), logging.StreamHandler()],
    )
    train(settings)
    return 0

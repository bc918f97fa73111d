"""Score denoising and JPEG-artifact removal models on the standard test sets, the official way.

    python bench/eval_restore.py --task denoise [--model PATH] [--sets CBSD68 Kodak24 McMaster] [--levels 10 15 25 35 50]
    python bench/eval_restore.py --task jpeg [--model PATH] [--sets LIVE1 classic5] [--levels 10 20 30 40 60 80]

Denoise: Gaussian noise added in float to the clean image with numpy's legacy generator seeded 0 for every image,
neither rounded nor clipped (as SwinIR's main_test_swinir.py does). JPEG: the clean image through Pillow's encoder
at the quality (4:2:0 chroma for colour images; gray images such as classic5 are encoded as gray and go through the
colour model as gray, i.e. luma only). PSNR over all channels (RGB for colour images) of the uint8 output against
the clean uint8 image, border 0; the JPEG table also scores the JPEG input itself. Default model: the pack's blind
default of the task. Prints one Markdown row per (set, level).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import swinir  # noqa: E402
from swinir.degrade import add_gaussian_noise, jpeg_roundtrip  # noqa: E402
from swinir.imageio import IMAGE_SUFFIXES  # noqa: E402
from swinir.metrics import psnr  # noqa: E402

from bench.eval_sr import DEFAULT_DATA, load_uint8  # noqa: E402

DENOISE_SETS = ("CBSD68", "Kodak24", "McMaster")
JPEG_SETS = ("LIVE1", "classic5")
DENOISE_LEVELS = (10, 15, 25, 35, 50)
JPEG_LEVELS = (10, 20, 30, 40, 60, 80)


def set_images(folder: Path) -> list[Path]:
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images in {folder}")
    return images


def degrade(clean: np.ndarray, task: str, level: int) -> np.ndarray:
    """Float HWC (or HW) input in the 0-1 scale for one clean uint8 image."""
    if task == "denoise":
        return add_gaussian_noise(clean.astype(np.float64) / 255.0, level, np.random.RandomState(0))
    return jpeg_roundtrip(clean, level) / 255.0


def run_model(model: swinir.SwinIR, x: np.ndarray) -> np.ndarray:
    """uint8 output, same layout as the input (HW for gray, HWC for colour)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = swinir.restore(model, t)[0]
    arr = (out * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return arr[..., 0] if x.ndim == 2 else arr


def to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255.0).round().astype(np.uint8)


def score(model: swinir.SwinIR, folder: Path, task: str, level: int) -> tuple[float, float, int]:
    """(mean PSNR of the model output, mean PSNR of the degraded input, image count)."""
    outs, ins = [], []
    for path in set_images(folder):
        clean = load_uint8(path)
        x = degrade(clean, task, level)
        outs.append(psnr(run_model(model, x), clean))
        ins.append(psnr(to_uint8(x), clean))
    return float(np.mean(outs)), float(np.mean(ins)), len(outs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=("denoise", "jpeg"), required=True)
    ap.add_argument("--model", help="checkpoint (default: the pack's blind default of the task)")
    ap.add_argument("--sets", nargs="+")
    ap.add_argument("--levels", type=int, nargs="+", help="noise sigmas (0-255 scale) or JPEG qualities")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = swinir.load_model(args.model or swinir.default_model_path(args.task))
    sets = args.sets or (DENOISE_SETS if args.task == "denoise" else JPEG_SETS)
    levels = args.levels or (DENOISE_LEVELS if args.task == "denoise" else JPEG_LEVELS)
    what = "sigma" if args.task == "denoise" else "quality"
    print(f"model: {swinir.describe(model.config)}")
    print(f"| set | {what} | input PSNR dB | model PSNR dB | gain dB |")
    print("|---|---|---|---|---|")
    for name in sets:
        for level in levels:
            out, inp, n = score(model, args.data / name, args.task, level)
            print(f"| {name} ({n}) | {level} | {inp:.2f} | {out:.2f} | {out - inp:+.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

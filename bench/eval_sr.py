"""Evaluate bicubic (and optionally a SwinIR model) on classic SR test sets.

Usage:
    python bench/eval_sr.py --model PATH_OR_none --scale 2 --sets Set5 Set14 [--data DIR]

Expects ``DIR/<set>/HR/<name>.png`` and ``DIR/<set>/LR_bicubic/X<s>/<name>x<s>.png``.
Prints one Markdown table row per (set, method): PSNR-Y / SSIM-Y averaged over
images, with ``crop_border = scale`` as in the official SwinIR evaluation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a plain script from anywhere

from swinir.imresize import imresize_uint8  # noqa: E402
from swinir.metrics import psnr_y, ssim_y  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"

Upscaler = Callable[[np.ndarray, int], np.ndarray]


def load_uint8(path: Path) -> np.ndarray:
    """HW for 8-bit gray files, HWC RGB otherwise."""
    img = Image.open(path)
    return np.asarray(img if img.mode == "L" else img.convert("RGB"))


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def to_rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    # MATLAB imresize on the uint8 LR, the baseline used in SR papers.
    return imresize_uint8(lr, scale)


def model_upscaler(model_path: str) -> Upscaler:
    import swinir

    model = swinir.load_model(model_path)

    def run(lr: np.ndarray, scale: int) -> np.ndarray:
        gray = lr.ndim == 2
        x = torch.from_numpy(to_rgb(lr).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        with torch.no_grad():
            out = swinir.restore(model, x)
        out = out[0].detach().float().cpu().clamp(0, 1)
        h, w = lr.shape[0] * scale, lr.shape[1] * scale
        if out.shape[-2] < h or out.shape[-1] < w:
            raise ValueError(f"model output {tuple(out.shape)} smaller than {h}x{w}")
        out = out[:, :h, :w]
        if gray:
            # Gray HR is compared as gray; the channels of a gray input's output
            # are near-identical, so their mean is the natural gray estimate.
            out = out.mean(dim=0, keepdim=True)
        arr = (out * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
        return arr[..., 0] if gray else arr

    return run


def evaluate_set(
    set_dir: Path, scale: int, upscale: Upscaler, gray_rgb: bool
) -> tuple[float, float, int]:
    """Mean (PSNR-Y, SSIM-Y) and image count for one set."""
    hr_paths = sorted((set_dir / "HR").glob("*.png"))
    if not hr_paths:
        raise FileNotFoundError(f"no HR images in {set_dir / 'HR'}")
    psnrs, ssims = [], []
    for hr_path in hr_paths:
        lr_path = set_dir / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
        hr = modcrop(load_uint8(hr_path), scale)
        lr = load_uint8(lr_path)
        if gray_rgb:
            hr, lr = to_rgb(hr), to_rgb(lr)
        sr = upscale(lr, scale)
        if sr.shape != hr.shape:
            raise ValueError(f"{hr_path.name}: SR {sr.shape} vs HR {hr.shape}")
        psnrs.append(psnr_y(sr, hr, scale))
        ssims.append(ssim_y(sr, hr, scale))
    return float(np.mean(psnrs)), float(np.mean(ssims)), len(hr_paths)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="none", help="model weights path, or 'none' for bicubic only")
    ap.add_argument("--scale", type=int, default=2, choices=(2, 3, 4, 8))
    ap.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--gray-rgb",
        action="store_true",
        help="treat gray images as RGB in the metric too (SwinIR's test script reads "
        "everything with cv2.IMREAD_COLOR); default scores gray images on their own values",
    )
    args = ap.parse_args(argv)

    methods: list[tuple[str, Upscaler]] = [("bicubic", bicubic)]
    if args.model.lower() != "none":
        methods.append((Path(args.model).name, model_upscaler(args.model)))

    print("| set | scale | method | PSNR-Y | SSIM-Y |")
    print("|---|---|---|---|---|")
    for set_name in args.sets:
        for name, fn in methods:
            p, s, n = evaluate_set(args.data / set_name, args.scale, fn, args.gray_rgb)
            print(f"| {set_name} ({n}) | x{args.scale} | {name} | {p:.2f} | {s:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

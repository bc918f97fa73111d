"""Scoring models on the standard test sets, the way the official SwinIR evaluation does.

Super-resolution: ``<set>/HR/<name>.png`` against ``<set>/LR_bicubic/X<s>/<name>x<s>.png`` upscaled, PSNR-Y / SSIM-Y
with ``crop_border = scale``; bicubic (MATLAB's, on the uint8 LR) is the baseline. Denoising: Gaussian noise added
in float to the clean image with numpy's legacy generator seeded 0 for every image, neither rounded nor clipped (as
SwinIR's main_test_swinir.py does). JPEG: the clean image through Pillow's encoder at the quality (4:2:0 chroma for
colour images; gray images are encoded as gray). Restoration is scored by PSNR over all channels of the uint8 output
against the clean uint8 image, border 0. `bench/eval_sr.py` and `bench/eval_restore.py` print the tables; the
quality tests assert on the same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..checkpoint import load_model
from ..engine import restore
from ..imageio import IMAGE_SUFFIXES
from ..network import SwinIR
from .degrade import add_gaussian_noise, jpeg_roundtrip
from .imresize import imresize_uint8
from .metrics import psnr, psnr_y, ssim_y

Upscaler = Callable[[np.ndarray, int], np.ndarray]

DENOISE_SETS = ("CBSD68", "Kodak24", "McMaster")
JPEG_SETS = ("LIVE1", "classic5")
DENOISE_LEVELS = (10, 15, 25, 35, 50)
JPEG_LEVELS = (10, 20, 30, 40, 60, 80)


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
    model = load_model(model_path)

    def run(lr: np.ndarray, scale: int) -> np.ndarray:
        gray = lr.ndim == 2
        x = torch.from_numpy(to_rgb(lr).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        with torch.no_grad():
            out = restore(model, x)
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


def run_model(model: SwinIR, x: np.ndarray) -> np.ndarray:
    """uint8 output, same layout as the input (HW for gray, HWC for colour)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    out = restore(model, t)[0]
    arr = (out * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return arr[..., 0] if x.ndim == 2 else arr


def to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255.0).round().astype(np.uint8)


def score(model: SwinIR, folder: Path, task: str, level: int) -> tuple[float, float, int]:
    """(mean PSNR of the model output, mean PSNR of the degraded input, image count)."""
    outs, ins = [], []
    for path in set_images(folder):
        clean = load_uint8(path)
        x = degrade(clean, task, level)
        outs.append(psnr(run_model(model, x), clean))
        ins.append(psnr(to_uint8(x), clean))
    return float(np.mean(outs)), float(np.mean(ins)), len(outs)

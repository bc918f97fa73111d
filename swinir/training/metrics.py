"""PSNR / SSIM on the Y channel, following the official SwinIR evaluation.

Mirrors ``utils/util_calculate_psnr_ssim.py`` of JingyunLiang/SwinIR with
``crop_border=scale`` and ``test_y_channel=True``, so numbers are comparable
with the published tables. Inputs are uint8 arrays, HWC RGB or HW gray.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "rgb_to_y", "psnr_y", "ssim_y"]

# MATLAB rgb2ycbcr, for RGB in [0, 1]; output Y in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y channel (float64, [0, 255] scale) of a uint8 HWC RGB or HW gray image.

    A gray image is its own Y (no BT.601 rescaling), as in SwinIR's metric
    code for single-channel inputs.
    """
    x = np.asarray(img).astype(np.float64)
    if x.ndim == 2:
        return x
    if x.ndim == 3 and x.shape[2] == 1:
        return x[..., 0]
    if x.ndim == 3 and x.shape[2] == 3:
        return 16.0 + (x / 255.0) @ _Y_WEIGHTS
    raise ValueError(f"expected HW or HWC (C in 1, 3) image, got shape {x.shape}")


def _prepare(sr: np.ndarray, hr: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: {sr.shape} vs {hr.shape}")
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    y1, y2 = rgb_to_y(sr), rgb_to_y(hr)
    if border:
        y1 = y1[border:-border, border:-border]
        y2 = y2[border:-border, border:-border]
    if y1.size == 0:
        raise ValueError(f"border {border} leaves no pixels of a {sr.shape[:2]} image")
    return y1, y2


def psnr_y(sr_uint8: np.ndarray, hr_uint8: np.ndarray, border: int) -> float:
    """PSNR (dB) on Y after cropping ``border`` pixels per side; inf when identical."""
    y1, y2 = _prepare(sr_uint8, hr_uint8, border)
    mse = float(np.mean((y1 - y2) ** 2))
    if mse == 0:
        return math.inf
    return 20.0 * math.log10(255.0 / math.sqrt(mse))


def psnr(out_uint8: np.ndarray, ref_uint8: np.ndarray, border: int = 0) -> float:
    """PSNR (dB) over all channels (RGB for colour images), as the official denoise and JPEG tables report it."""
    if out_uint8.shape != ref_uint8.shape:
        raise ValueError(f"shape mismatch: {out_uint8.shape} vs {ref_uint8.shape}")
    a, b = out_uint8.astype(np.float64), ref_uint8.astype(np.float64)
    if border:
        a, b = a[border:-border, border:-border], b[border:-border, border:-border]
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 20.0 * math.log10(255.0 / math.sqrt(mse))


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    # Same as cv2.getGaussianKernel(11, 1.5); the 2-D window is its outer product.
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # Separable 'valid' filtering == cv2.filter2D(...)[5:-5, 5:-5] in SwinIR.
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def ssim_y(sr_uint8: np.ndarray, hr_uint8: np.ndarray, border: int) -> float:
    """Mean SSIM on Y (Gaussian 11x11, sigma 1.5, 'valid' window) after cropping ``border``."""
    y1, y2 = _prepare(sr_uint8, hr_uint8, border)
    if min(y1.shape) < 11:
        raise ValueError(f"image too small for an 11x11 SSIM window: {y1.shape}")
    c1 = (0.01 * 255) ** 2
    c2 = (0.03 * 255) ** 2
    a = torch.from_numpy(y1)[None, None]
    b = torch.from_numpy(y2)[None, None]
    g = _gaussian_1d()
    mu1, mu2 = _filter_valid(a, g), _filter_valid(b, g)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = _filter_valid(a * a, g) - mu1_sq
    s2 = _filter_valid(b * b, g) - mu2_sq
    s12 = _filter_valid(a * b, g) - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(ssim_map.mean())

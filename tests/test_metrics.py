"""PSNR-Y / SSIM-Y metrics, plus the bicubic Set5 x2 reference number."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared_data import DATA, need
from swinir.training import evaluate
from swinir.training.metrics import psnr_y, rgb_to_y, ssim_y



def _rand_rgb(seed: int, shape: tuple[int, int, int] = (32, 40, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def test_rgb_to_y_matlab_values() -> None:
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0]]], dtype=np.uint8)
    y = rgb_to_y(px)
    np.testing.assert_allclose(y[0], [16.0, 235.0, 16.0 + 65.481], atol=1e-9)


def test_gray_is_its_own_y() -> None:
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(rgb_to_y(g), g.astype(np.float64))


def test_psnr_identical_is_inf() -> None:
    img = _rand_rgb(0)
    assert psnr_y(img, img, border=2) == math.inf


def test_psnr_known_value() -> None:
    # One pixel off by 10 in a 4x4 gray image: MSE = 100/16, PSNR = 20 log10(255/2.5).
    a = np.zeros((4, 4), dtype=np.uint8)
    b = a.copy()
    b[1, 2] = 10
    assert psnr_y(a, b, border=0) == pytest.approx(20 * math.log10(255 / 2.5), abs=1e-9)
    # The border crop removes rows/cols 0 and 3 only, leaving 4 pixels.
    assert psnr_y(a, b, border=1) == pytest.approx(20 * math.log10(255 / 5.0), abs=1e-9)


def test_ssim_identical_is_one() -> None:
    img = _rand_rgb(1)
    assert ssim_y(img, img, border=2) == pytest.approx(1.0, abs=1e-12)
    g = img[..., 0]
    assert ssim_y(g, g, border=0) == pytest.approx(1.0, abs=1e-12)


def test_ssim_degrades_with_noise() -> None:
    img = _rand_rgb(2, (48, 48, 3))
    noisy = np.clip(img.astype(int) + np.random.default_rng(3).integers(-40, 41, img.shape), 0, 255)
    s = ssim_y(noisy.astype(np.uint8), img, border=0)
    assert 0.0 < s < 1.0


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        psnr_y(_rand_rgb(0, (8, 8, 3)), _rand_rgb(0, (8, 9, 3)), border=0)


def test_bicubic_set5_x2_matches_paper() -> None:
    set5 = need(DATA / "Set5", "the bicubic reference check needs Set5")
    psnr, ssim, n = evaluate.evaluate_set(set5, 2, evaluate.bicubic, gray_rgb=False)
    assert n == 5
    assert abs(psnr - 33.66) < 0.05
    assert abs(ssim - 0.9299) < 0.002

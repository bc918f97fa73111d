"""Deterministic test pictures for the degradation estimators and Auto Restore (tests/test_estimate.py,
tests/comfy/test_auto_restore.py)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from swinir.training.degrade import add_gaussian_noise


def _blur(field: np.ndarray, passes: int, size: int) -> np.ndarray:
    for _ in range(passes):
        for axis in (0, 1):
            field = sum(np.roll(field, s, axis=axis) for s in range(-(size // 2), size // 2 + 1)) / size
    return field


@lru_cache(maxsize=None)
def picture(height: int = 192, width: int = 256, seed: int = 0, gray: bool = False, dark: bool = False) -> np.ndarray:
    """A deterministic photo-like uint8 image: smooth shading, waves of many frequencies and hard-edged discs,
    drawn 4x larger and averaged down (antialiased, like a camera's image, not aliased like a raw drawing)."""
    rng = np.random.default_rng(seed)
    channels, big = (1 if gray else 3), 4
    h, w = height * big, width * big
    base = _blur(rng.normal(0, 1, (height, width, channels)), 3, 15) * 900
    img = np.repeat(np.repeat(base, big, axis=0), big, axis=1) + 128
    y, x = np.mgrid[0:h, 0:w] / big
    for _ in range(10):
        fy, fx = rng.uniform(-0.3, 0.3, 2)
        img += rng.uniform(3, 10, channels) * np.sin(2 * np.pi * (fy * y + fx * x) + rng.uniform(0, 6.3))[..., None]
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(10, 40)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] += rng.uniform(-70, 70, channels)
    img = img.reshape(height, big, width, big, channels).mean(axis=(1, 3))
    if dark:  # a third of the picture near black, where noise gets clipped
        img[:, : width // 3] *= 0.15
    img = np.round(np.clip(img, 0 if dark else 12, 243)).astype(np.uint8)
    img = img[..., 0] if gray else img
    img.flags.writeable = False  # cached: shared by the tests
    return img


def noisy(img: np.ndarray, sigma: float, seed: int = 1, eight_bit: bool = False) -> np.ndarray:
    """Float noisy image in [0, 1] (values may leave the range), or rounded and clipped to 8 bits."""
    out = add_gaussian_noise(img.astype(np.float32) / 255.0, sigma, np.random.default_rng(seed))
    return np.clip(np.round(out * 255.0), 0, 255) / 255.0 if eight_bit else out

"""The degradations SwinIR restores, made the way the official tests make them.

Shared by training (random level per patch), the evaluation scripts (one fixed level per image) and the
estimator benchmarks, so a "sigma 25" or a "quality 20" means the same thing everywhere.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Pillow's names for the chroma subsampling of a JPEG; 4:2:0 is what cameras, browsers and cv2 write by default.
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def add_gaussian_noise(clean: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Float image in [0, 1] plus N(0, sigma/255): float, neither rounded nor clipped, as the official test adds
    it (`img + np.random.normal(0, sigma / 255, shape)`)."""
    return clean + rng.normal(0.0, sigma / 255.0, clean.shape).astype(clean.dtype)


def jpeg_roundtrip(image: np.ndarray, quality: int, subsampling: str = "4:2:0") -> np.ndarray:
    """uint8 HWC (3 channels) or HW image through Pillow's JPEG encoder and decoder at an IJG quality (1-100)."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be 1-100, got {quality}")
    buf = io.BytesIO()
    img = Image.fromarray(image)
    options = {"subsampling": SUBSAMPLING[subsampling]} if img.mode == "RGB" else {}
    img.save(buf, format="JPEG", quality=int(quality), **options)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert(img.mode))

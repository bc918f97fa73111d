"""What degraded an image: its noise level and JPEG quality, measured from the pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..image_checks import check_images
from .jpeg import estimate_jpeg
from .noise import estimate_noise

# Float images that are 8-bit values divided by 255 are snapped back to exact integers (float32 rounding would
# otherwise hide the rounding and clipping the estimators correct for).
INTEGER_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Degradation:
    """One image's measured degradation. noise_sigma is on the 0-255 scale; jpeg_quality on the IJG 1-100 scale,
    None when no JPEG block grid was found; grid_offset is (row, column) of the first whole 8x8 block."""

    noise_sigma: float
    jpeg_quality: int | None
    grid_offset: tuple[int, int] | None = None
    gray: bool = False
    jpeg_evidence: float = 0.0
    notes: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """One line, e.g. 'noise sigma 14.8, JPEG quality 23 (grid offset 3,5)'."""
        parts = [f"noise sigma {self.noise_sigma:.1f}"]
        if self.jpeg_quality is None:
            parts.append("no JPEG grid")
        else:
            grid = "" if self.grid_offset in (None, (0, 0)) else f" (grid offset {self.grid_offset[0]},{self.grid_offset[1]})"
            parts.append(f"JPEG quality {self.jpeg_quality}{grid}")
        if self.gray:
            parts.append("gray")
        text = ", ".join(parts)
        return f"{text}; {'; '.join(self.notes)}" if self.notes else text


def _planes(image: torch.Tensor) -> tuple[np.ndarray, bool]:
    """(C, H, W) tensor in [0, 1] -> colour planes on the 0-255 scale (alpha dropped), and whether it is gray."""
    colour = 1 if image.shape[0] in (1, 2) else 3
    planes = image[:colour].detach().to("cpu", torch.float32).numpy() * np.float32(255.0)
    rounded = np.round(planes)
    if float(np.abs(planes - rounded).max()) < INTEGER_TOLERANCE:
        planes = rounded
    gray = colour == 1 or (np.array_equal(planes[0], planes[1]) and np.array_equal(planes[0], planes[2]))
    return planes, gray


def analyse_planes(planes: np.ndarray, gray: bool) -> Degradation:
    """The degradation of one (C, H, W) image on the 0-255 scale."""
    if gray and planes.shape[0] == 3:
        planes = planes[:1]
    if planes.size and float(planes.max()) == float(planes.min()):
        return Degradation(0.0, None, gray=gray, notes=("flat image (one value): no noise or JPEG grid to measure",))
    noise = estimate_noise(planes)
    jpeg = estimate_jpeg(planes)
    notes = tuple(n for n in (noise.note, jpeg.note) if n)
    return Degradation(
        noise_sigma=round(noise.sigma, 2),
        jpeg_quality=jpeg.quality,
        grid_offset=jpeg.grid,
        gray=gray,
        jpeg_evidence=round(jpeg.evidence, 3),
        notes=notes,
    )


def estimate_degradation(images: torch.Tensor) -> list[Degradation]:
    """Noise sigma and JPEG quality of each image of an NCHW float batch in [0, 1] (1-4 channels; alpha ignored).

    NaN or infinite values raise InputError; a flat image, or one smaller than the estimators' blocks, gives
    sigma 0 and no JPEG with a note saying why.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    check_images(images)
    return [analyse_planes(*_planes(image)) for image in images]

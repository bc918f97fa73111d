"""The IJG (libjpeg) quantisation tables and the quality scale they define.

Every mainstream encoder that takes a 1-100 "quality" (libjpeg, libjpeg-turbo, Pillow, OpenCV, browsers, GIMP by
default) scales the example tables of the JPEG standard (Annex K) this way; `quality_of_table` turns a table read
from a file back into that quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ITU-T T.81 Annex K, natural (row-major) order.
LUMA_BASE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
], dtype=np.int64)
CHROMA_BASE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
], dtype=np.int64)

QUALITIES = np.arange(1, 101)

# Zigzag scan position -> natural index (what the file stores; some readers return tables in this order).
ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
])


def scale_factor(quality: int) -> int:
    """libjpeg's jpeg_quality_scaling: percent scale of the base tables."""
    quality = min(max(int(quality), 1), 100)
    return 5000 // quality if quality < 50 else 200 - 2 * quality


def table(quality: int, base: np.ndarray = LUMA_BASE) -> np.ndarray:
    """The 64 steps (natural order) libjpeg uses at `quality`, baseline-limited to 1-255 as Pillow writes them."""
    return np.clip((base * scale_factor(quality) + 50) // 100, 1, 255)


LUMA_TABLES = np.stack([table(int(q)) for q in QUALITIES])  # (100, 64): row q-1 is quality q
CHROMA_TABLES = np.stack([table(int(q), CHROMA_BASE) for q in QUALITIES])


@dataclass(frozen=True)
class TableQuality:
    """The IJG quality that best explains a file's quantisation table."""

    quality: int
    exact: bool  # the table is exactly libjpeg's at that quality
    mean_error: float  # mean absolute step difference to it (0 when exact)


def quality_of_table(steps, chroma: bool = False) -> TableQuality:
    """The IJG quality of a 64-entry table (natural or zigzag order); the nearest one for other encoders."""
    steps = np.asarray(list(steps), dtype=np.int64)
    if steps.shape != (64,):
        raise ValueError(f"a quantisation table has 64 steps, got {steps.size}")
    tables = CHROMA_TABLES if chroma else LUMA_TABLES
    best: TableQuality | None = None
    for order in (steps, steps[np.argsort(ZIGZAG)]):
        errors = np.abs(tables - order[None, :]).mean(axis=1)
        i = int(errors.argmin())
        candidate = TableQuality(int(QUALITIES[i]), bool(errors[i] == 0), float(errors[i]))
        if best is None or candidate.mean_error < best.mean_error:
            best = candidate
    assert best is not None
    return best

"""Whether decoded pixels carry a JPEG 8x8 block grid, where the grid is, and the IJG quality it was saved at.

A JPEG stores each 8x8 block's DCT coefficients as integer multiples of a quantisation step (one step per
frequency, from the quality's table). Decoding and rounding to 8-bit pixels blurs each multiple by only about 0.35
(the rounding error, seen through an orthonormal transform; the model allows ROUNDING_STD), so on the right grid
the luma's coefficients sit in narrow peaks at the multiples of the steps; on any other grid, or in an image never
compressed, they spread smoothly.

1. Grid: for each of the 64 offsets, the share of exact zeros (|c| < 0.5) among the small AC coefficients
   (|c| < 3) of a sample of blocks: a JPEG's coefficients jump from 0 straight to the first step, so this share is
   far higher on its grid. This also finds the grid of a cropped image.
2. Quality: per AC frequency, the log-likelihood ratio between "multiples of step T blurred by the rounding noise"
   (the multiples weighted by a Laplacian fitted to the coefficients) and that smooth Laplacian, over the
   coefficients outside the zero peak (flat blocks have zero coefficients on any grid: they tell nothing); each
   IJG quality scores the sum over frequencies of the ratio of its table's step. Steps too fine lose (their odd
   multiples stay empty), steps too coarse lose (coefficients fall between their multiples), so the table the image
   was saved with wins, exactly on every test set. The DC term counts for gray images only: the luma recomputed
   from decoded RGB carries a small colour-dependent offset (libjpeg's fixed-point conversion), constant over a
   block, which blurs the DC peaks.
   A quick pass scores every quality on QUICK_BLOCKS blocks at the GRID_CANDIDATES best offsets and picks the grid
   and the neighbourhood; the full sample then scores the qualities within FINE_WINDOW of it (neighbouring tables
   share most steps but differ where it costs, so the score is sharply peaked and a coarse grid of qualities would
   miss the peak). A best score under MIN_EVIDENCE per block, or quality 100 (every step 1), means no JPEG.

Blocks with a pixel at 0 or 255 in any channel are left out (clipping in the decoder breaks the lattice), unless
nearly all blocks have one (heavy noise), when they are all used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .ijg import LUMA_TABLES, QUALITIES

BLOCK = 8
# Samples: enough blocks for every frequency's peaks, few enough for well under a second per megapixel.
GRID_SAMPLE_BLOCKS = 1000
QUALITY_SAMPLE_BLOCKS = 8000
GRID_CANDIDATES = 3
MIN_BLOCKS = 4
# Above this share of blocks with a clipped pixel, clipped blocks are used too (else nothing would be left).
MAX_CLIPPED_BLOCK_SHARE = 0.9
# Rounding noise of a decoded coefficient (std), and the share of coefficients allowed off any lattice.
ROUNDING_STD = 0.45
OUTLIER_SHARE = 0.02
HISTOGRAM_BIN = 0.125
# AC coefficients below this are the zero peak (about 3 rounding stds), left out of the likelihood.
NONZERO = 1.5
# Multiples of a step that can straddle NONZERO (steps are >= 1): 4 * 1 > NONZERO + 4 stds.
LATTICE_EDGE = 4
# Mean log-likelihood ratio per block (nats) above which the lattice is a JPEG's, not chance.
MIN_EVIDENCE = 0.3
# Blocks of the quick pass, and the qualities either side of its best that the full sample then scores.
QUICK_BLOCKS = 1500
FINE_WINDOW = 3

_n = np.arange(BLOCK)
DCT = np.cos(np.pi * (2 * _n[None, :] + 1) * _n[:, None] / (2 * BLOCK)) * math.sqrt(2 / BLOCK)
DCT[0] /= math.sqrt(2)  # orthonormal DCT-II: the JPEG forward transform


@dataclass(frozen=True)
class JPEGEstimate:
    quality: int | None  # IJG quality, None when no grid was found
    grid: tuple[int, int] | None  # (row, column) of the first whole block
    evidence: float  # mean log-likelihood ratio per block of the best quality (> MIN_EVIDENCE: a JPEG)
    blocks: int  # blocks the quality was measured on
    note: str | None = None


def luma(planes: np.ndarray) -> np.ndarray:
    """(C, H, W) on the 0-255 scale -> JPEG's Y (BT.601 full range), float32 (its rounding, 1e-4 on a
    coefficient, is nothing beside the 0.45 of the decoder's)."""
    if planes.shape[0] == 1:
        return planes[0].astype(np.float32)
    r, g, b = (planes[i].astype(np.float32) for i in range(3))
    return np.float32(0.299) * r + np.float32(0.587) * g + np.float32(0.114) * b


def _clipped_pixels(planes: np.ndarray) -> np.ndarray:
    return ((planes <= 0) | (planes >= 255)).any(axis=0)


def _block_view(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(rows, cols, 8, 8) view of the whole blocks of a grid starting at (dy, dx)."""
    h, w = image.shape
    rows, cols = (h - dy) // BLOCK, (w - dx) // BLOCK
    part = image[dy:dy + rows * BLOCK, dx:dx + cols * BLOCK]
    return part.reshape(rows, BLOCK, cols, BLOCK).swapaxes(1, 2)


def _dct(blocks: np.ndarray) -> np.ndarray:
    """(N, 8, 8) pixels -> (N, 64) coefficients (level-shifted by 128 like the encoder)."""
    return (DCT @ (blocks - 128.0) @ DCT.T).reshape(len(blocks), 64)


def _usable_blocks(y: np.ndarray, clipped: np.ndarray, dy: int, dx: int, limit: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Up to `limit` unclipped blocks of the grid at (dy, dx), spread over the image, gathered without copying
    the rest."""
    bad = _block_view(clipped, dy, dx).any(axis=(2, 3))
    good = np.flatnonzero(~bad)
    chosen = good[_sample(len(good), limit, rng)]
    return _block_view(y, dy, dx)[np.unravel_index(chosen, bad.shape)]


def _sample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, limit, replace=False))


def grid_scores(y: np.ndarray, clipped: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(8, 8) share of exact zeros among small AC coefficients, per grid offset (row, column).

    Measured on a sample of block rows and columns; the DCT is separable, so the column transform of a sampled
    row band serves all eight column offsets.
    """
    h, w = y.shape
    rows, cols = (h - BLOCK) // BLOCK, (w - BLOCK) // BLOCK  # whole blocks at every offset
    per_row = max(1, int(math.sqrt(GRID_SAMPLE_BLOCKS * rows / max(cols, 1))))
    r = _sample(rows, per_row, rng)
    c = _sample(cols, max(1, GRID_SAMPLE_BLOCKS // len(r)), rng)
    inside = np.arange(BLOCK)
    scores = np.zeros((BLOCK, BLOCK))
    for dy in range(BLOCK):
        row_index = (dy + BLOCK * r[:, None] + inside).ravel()
        band = DCT @ (y[row_index].reshape(len(r), BLOCK, w) - 128.0)  # (rows, 8, w): columns transformed
        band_clipped = clipped[row_index].reshape(len(r), BLOCK, w).any(axis=1)  # (rows, w)
        for dx in range(BLOCK):
            col_index = (dx + BLOCK * c[:, None] + inside).ravel()
            part = band[:, :, col_index].reshape(len(r), BLOCK, len(c), BLOCK)
            coefs = part @ DCT.T  # (rows, 8, cols, 8)
            good = ~band_clipped[:, col_index].reshape(len(r), len(c), BLOCK).any(axis=2)
            if not good.any():
                continue
            ac = np.abs(coefs.transpose(0, 2, 1, 3)[good].reshape(-1, 64)[:, 1:])
            small = np.count_nonzero(ac < 3.0)
            scores[dy, dx] = np.count_nonzero(ac < 0.5) / small if small else 0.0
    return scores


def _histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bins = np.round(values / HISTOGRAM_BIN).astype(np.int64)
    low = bins.min()
    counts = np.bincount(bins - low)
    occupied = np.nonzero(counts)[0]
    return (occupied + low) * HISTOGRAM_BIN, counts[occupied].astype(np.float64)


def _log_normal(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    s = ROUNDING_STD
    return -0.5 * ((x - mean) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))


def _mix_with_outliers(log_lattice: np.ndarray, log_null: np.ndarray) -> np.ndarray:
    return np.logaddexp(math.log(1 - OUTLIER_SHARE) + log_lattice, math.log(OUTLIER_SHARE) + log_null)


def _survival(z: np.ndarray) -> np.ndarray:
    return 0.5 * _erfc(z / math.sqrt(2.0)).astype(np.float64)


_erfc = np.frompyfunc(math.erfc, 1, 1)


def _ac_log_ratios(coefs: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Log-likelihood ratio of each step against a Laplacian, for one AC frequency, given |c| >= NONZERO.

    Only the coefficients outside the zero peak count: flat blocks have zero AC coefficients on any grid, so
    the zeros say nothing about a lattice, while the empty gap up to the first step and the peaks beyond do.
    """
    a = np.abs(coefs)
    a = a[a >= NONZERO]
    if len(a) == 0:
        return np.zeros(len(steps))
    x, counts = _histogram(a)
    b = max(float(np.average(x, weights=counts)) - NONZERO, 0.05)
    log_null = -(x - NONZERO) / b - math.log(b)  # the exponential tail of a Laplacian beyond NONZERO
    t = steps.astype(np.float64)[None, :]
    log_c = t / (2 * b) + np.log(-np.expm1(-t / b))  # P(|k| = k) = exp(-kT/b) * 2 sinh(T/2b)
    # Mass of the lattice above NONZERO: the first multiples straddle it, the rest lie wholly above.
    near = np.arange(1, LATTICE_EDGE + 1, dtype=np.float64)[:, None]
    log_near = log_c - near * t / b + np.log(_survival((NONZERO - near * t) / ROUNDING_STD))
    log_tail = log_c - (LATTICE_EDGE + 1) * t / b - np.log(-np.expm1(-t / b))
    log_mass = np.logaddexp(np.logaddexp.reduce(log_near, axis=0), log_tail[0])
    xx = x[:, None]
    k = np.maximum(np.round(xx / t), 1.0)  # the nearest multiple; the others add nothing beyond the outliers
    log_lattice = log_c - k * t / b + _log_normal(xx, k * t) - log_mass
    ratio = _mix_with_outliers(log_lattice, log_null[:, None]) - log_null[:, None]
    return counts @ ratio


def _dc_log_ratios(coefs: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Log-likelihood ratio of each step for the DC coefficient, against a 16-wide histogram density."""
    x, counts = _histogram(coefs)
    edges = np.arange(-1040.0, 1041.0, 16.0)
    hist, _ = np.histogram(coefs, edges)
    density = (hist + 0.5) / (hist.sum() + 0.5 * len(hist)) / 16.0
    cdf = np.concatenate([[0.0], np.cumsum(density * 16.0)])
    log_null = np.log(density[np.clip(((x - edges[0]) // 16).astype(np.int64), 0, len(hist) - 1)])
    t = steps.astype(np.float64)[None, :]
    xx = x[:, None]
    k = np.round(xx / t)
    mass = np.interp((k + 0.5) * t, edges, cdf) - np.interp((k - 0.5) * t, edges, cdf)
    log_lattice = np.log(np.maximum(mass, 1e-300)) + _log_normal(xx, k * t)
    ratio = _mix_with_outliers(log_lattice, log_null[:, None]) - log_null[:, None]
    return counts @ ratio


def quality_scores(coefs: np.ndarray, use_dc: bool, qualities: np.ndarray = QUALITIES) -> np.ndarray:
    """Summed log-likelihood ratio of each IJG quality's luma table in `qualities`, for (N, 64) coefficients."""
    tables = LUMA_TABLES[np.asarray(qualities) - 1]
    total = np.zeros(len(tables))
    for f in range(0 if use_dc else 1, 64):
        steps, index = np.unique(tables[:, f], return_inverse=True)
        ratios = (_dc_log_ratios if f == 0 else _ac_log_ratios)(coefs[:, f], steps)
        total += ratios[index]
    return total


def _window(centre: int) -> np.ndarray:
    return QUALITIES[max(0, centre - 1 - FINE_WINDOW):centre + FINE_WINDOW]


def estimate_jpeg(planes: np.ndarray, seed: int = 0) -> JPEGEstimate:
    """JPEG grid and IJG quality of a (C, H, W) image on the 0-255 scale."""
    h, w = planes.shape[1:]
    if h < 2 * BLOCK or w < 2 * BLOCK:
        return JPEGEstimate(None, None, 0.0, 0, f"image smaller than {2 * BLOCK}x{2 * BLOCK} pixels: JPEG not measured")
    rng = np.random.default_rng(seed)
    y = luma(planes)
    clipped = _clipped_pixels(planes)
    if _block_view(clipped, 0, 0).any(axis=(2, 3)).mean() > MAX_CLIPPED_BLOCK_SHARE:
        clipped = np.zeros_like(clipped)  # heavy noise: nearly every block touches 0 or 255, so use them all
    scores = grid_scores(y, clipped, rng)
    use_dc = planes.shape[0] == 1
    # The quick pass picks the grid and the quality's neighbourhood; the full sample then decides (see above).
    best: tuple[float, int, tuple[int, int], np.ndarray] | None = None
    for flat in np.argsort(scores, axis=None)[::-1][:GRID_CANDIDATES]:
        dy, dx = divmod(int(flat), BLOCK)
        blocks = _usable_blocks(y, clipped, dy, dx, QUALITY_SAMPLE_BLOCKS, rng)
        if len(blocks) < MIN_BLOCKS:
            continue
        coefs = _dct(blocks)
        if not np.any(np.abs(coefs[:, 1:]) >= NONZERO):
            continue  # flat blocks only: no lattice to see
        quick = coefs[::math.ceil(len(coefs) / QUICK_BLOCKS)]  # spread over the image, like the sample
        per_quality = quality_scores(quick, use_dc) / len(quick)
        q = int(per_quality.argmax())
        if best is None or per_quality[q] > best[0]:
            best = (float(per_quality[q]), int(QUALITIES[q]), (dy, dx), coefs)
    if best is None:
        return JPEGEstimate(None, None, 0.0, 0, "too few textured, unclipped 8x8 blocks: JPEG not measured")
    _, centre, grid, coefs = best
    window = _window(centre)
    per_quality = quality_scores(coefs, use_dc, window) / len(coefs)
    i = int(per_quality.argmax())
    quality, evidence = int(window[i]), float(per_quality[i])
    if evidence < MIN_EVIDENCE or quality == 100:
        return JPEGEstimate(None, None, evidence, len(coefs))
    return JPEGEstimate(quality, grid, evidence, len(coefs))

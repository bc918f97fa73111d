"""How `tile="auto"` picks the tile size: bounded by memory on every device and, on the CPU, sized to the cache.

Memory: the whole image when its estimated peak fits the budget, else the largest window-aligned tile that does
(see `memory.py`).

CPU cache: a forward pass slows down once one embed-dim activation of the input no longer fits the last-level
cache (on the 2-core EPYC of bench/RESULTS.md, 1.8x per pixel between a 256² input, 15.7 MB per activation of the
default model, and 384², 35 MB, with a 32 MiB L3). So on the CPU the tile is also capped at the largest size whose
activation fits `CACHE_SHARE` of the last-level cache as the system reports it, which gives the 180-channel M
networks smaller tiles than the 60-channel S ones. The share is measured (`bench/bench_tiles.py`, recorded in
bench/RESULTS.md). A tile never goes below `MIN_CACHE_TILE_WINDOWS` windows a side: below that the overlaps cost
more than the cache saves.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import torch

from . import memory
from .config import SwinIRConfig
from .tiling import align_down

MIN_TILE_WINDOWS = 4
# Of the last-level cache one activation may use before tiles are cut smaller (measured: bench/bench_tiles.py).
CACHE_SHARE = 0.5
MIN_CACHE_TILE_WINDOWS = 16
_SYS_CPU = Path("/sys/devices/system/cpu/cpu0/cache")


def _size_bytes(text: str) -> int:
    text = text.strip().upper()
    factor = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * factor


@lru_cache(maxsize=1)
def last_level_cache_bytes(root: Path = _SYS_CPU) -> int | None:
    """Size of the largest unified/data cache of CPU 0 as the kernel reports it (Linux sysfs); None if unknown."""
    best = None
    try:
        for index in root.glob("index*"):
            kind = (index / "type").read_text().strip()
            if kind not in ("Unified", "Data"):
                continue
            size = _size_bytes((index / "size").read_text())
            best = size if best is None else max(best, size)
    except (OSError, ValueError):
        return None
    return best


def cache_tile(config: SwinIRConfig, dtype: torch.dtype, cache_bytes: int | None) -> int | None:
    """Largest window-aligned tile side whose activation (tokens x embed_dim) fits CACHE_SHARE of the cache."""
    if cache_bytes is None:
        return None
    itemsize = torch.finfo(dtype).bits // 8
    side = math.isqrt(int(CACHE_SHARE * cache_bytes / (config.embed_dim * itemsize)))
    w = config.window_size
    return max(align_down(side, w), MIN_CACHE_TILE_WINDOWS * w)


def memory_tile(config: SwinIRConfig, height: int, width: int, budget: int, dtype: torch.dtype) -> int:
    if memory.estimate_bytes(config, height * width, dtype) <= budget:
        return max(height, width)
    side = math.isqrt(memory.largest_tile_pixels(config, budget, dtype))
    w = config.window_size
    return max(align_down(side, w), MIN_TILE_WINDOWS * w)


def auto_tile(
    config: SwinIRConfig, height: int, width: int, budget: int, dtype: torch.dtype, device: torch.device,
    cache_bytes: int | None = None,
) -> int:
    """The tile side "auto" uses for a padded height x width input (window multiples)."""
    tile = memory_tile(config, height, width, budget, dtype)
    if device.type == "cpu":
        cap = cache_tile(config, dtype, cache_bytes if cache_bytes is not None else last_level_cache_bytes())
        if cap is not None and cap < tile:
            tile = cap
    return tile

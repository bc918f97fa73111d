"""Tile plans and blending weights: window-aligned, full-size tiles with smooth (half-sine) overlaps.

The image is first padded to a window multiple, exactly as the network pads a whole image, so every tile origin
and size is a window multiple and no tile pads internally. Tiles are spread evenly (the last one is never a
skinny remainder); neighbours overlap by at least `overlap`. In an overlap, the first quarter on each side is pure
context (weight 0 for the tile whose border it is, since its output there saw no context), and the middle half
cross-fades with sin^2 / cos^2 weights that sum to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .cache import cached


def align_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def align_down(value: int, multiple: int) -> int:
    return value // multiple * multiple


def axis_tile_size(length: int, tile: int, overlap: int, window: int) -> int:
    """The smallest window-aligned size (at most `tile`) that covers `length` with as few tiles as `tile` needs.

    A 1024 px side with a 872 px limit needs two tiles either way; two 528 px tiles do 40 % less work than two
    872 px tiles that overlap by 720 px."""
    if tile >= length:
        return length
    count = math.ceil((length - overlap) / (tile - overlap))
    return min(tile, align_up(math.ceil((length - overlap) / count) + overlap, window))


def axis_origins(length: int, tile: int, overlap: int, window: int) -> list[int]:
    """Window-aligned origins of full-size tiles covering [0, length); `length` and `tile` are window multiples."""
    if tile >= length:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    count = max(count, 2)
    span = length - tile
    return sorted({align_down(round(i * span / (count - 1)), window) for i in range(count - 1)} | {span})


@dataclass(frozen=True)
class Tile:
    y: int
    x: int
    height: int
    width: int


@dataclass(frozen=True)
class TilePlan:
    height: int  # padded input size (window multiples)
    width: int
    tile: int  # the size limit the plan was made for
    overlap: int
    tile_height: int  # the actual (full, equal) tile sizes
    tile_width: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def tiles(self) -> list[Tile]:
        return [Tile(y, x, self.tile_height, self.tile_width) for y in self.ys for x in self.xs]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def plan_tiles(height: int, width: int, tile: int, overlap: int, window: int) -> TilePlan:
    """Plan for a padded image of `height` x `width` (window multiples)."""
    tile = max(align_down(tile, window), window)
    overlap = min(align_up(overlap, window), max(0, align_down(tile // 2, window)))
    th = axis_tile_size(height, tile, overlap, window)
    tw = axis_tile_size(width, tile, overlap, window)
    return TilePlan(
        height, width, tile, overlap, th, tw,
        tuple(axis_origins(height, th, overlap, window)),
        tuple(axis_origins(width, tw, overlap, window)),
    )


def _ramp(length: int) -> torch.Tensor:
    """Weight of the tile entering an overlap of `length` pixels: 0 over the first quarter, a sin^2 rise over the
    middle half, 1 over the last quarter. The leaving tile uses 1 - ramp, so the two always sum to one."""
    margin = length // 4
    rise = length - 2 * margin
    pos = torch.arange(length, dtype=torch.float64) - margin + 0.5
    t = (pos / max(rise, 1)).clamp(0, 1)
    return torch.sin(t * math.pi / 2) ** 2


def _raw_axis_weight(origins: tuple[int, ...], index: int, size: int, scale: int) -> torch.Tensor:
    w = torch.ones(size * scale, dtype=torch.float64)
    start = origins[index]
    if index > 0:
        ov = (origins[index - 1] + size - start) * scale
        w[:ov] *= _ramp(ov)
    if index + 1 < len(origins):
        ov = (start + size - origins[index + 1]) * scale
        w[size * scale - ov :] *= 1 - _ramp(ov)
    return w


def axis_weights(origins: tuple[int, ...], size: int, scale: int) -> tuple[torch.Tensor, ...]:
    """1-D weights (output resolution) of every tile along one axis, normalised to sum to one everywhere.

    Two neighbours' ramps already sum to one; normalising also covers tiles closer than half a tile apart,
    where three tiles overlap and the ramps would multiply."""
    return cached(("axis_weights", origins, size, scale), "cpu", lambda: _axis_weights(origins, size, scale))


def _axis_weights(origins: tuple[int, ...], size: int, scale: int) -> tuple[torch.Tensor, ...]:
    length = (origins[-1] + size) * scale
    raw = [_raw_axis_weight(origins, i, size, scale) for i in range(len(origins))]
    total = torch.zeros(length, dtype=torch.float64)
    for o, w in zip(origins, raw):
        total[o * scale : o * scale + w.numel()] += w
    return tuple(w / total[o * scale : o * scale + w.numel()] for o, w in zip(origins, raw))


def tile_weight(plan: TilePlan, tile: Tile, scale: int) -> torch.Tensor:
    """(H, W) blending weight of one tile at output resolution; all tiles' weights sum to one."""
    wy = axis_weights(plan.ys, tile.height, scale)[plan.ys.index(tile.y)]
    wx = axis_weights(plan.xs, tile.width, scale)[plan.xs.index(tile.x)]
    return (wy[:, None] * wx[None, :]).float()

"""Window layouts for (shifted) window attention, recomputed per input size and cached.

The official network rolls the feature map, partitions it into windows, and undoes both after attention: four
copies per block. Here a *layout* is a single permutation of the flattened tokens that does the roll and the
partition at once; the residual stream stays in the current block's layout and moves to the next block's layout
with one gather. Windows that the shift mask leaves untouched come first, so attention for them needs only the
relative-position bias and only the last row and column of windows need the shift mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

# The value the official code writes into the shift mask; kept so outputs match it exactly.
MASK_VALUE = -100.0


@dataclass(frozen=True)
class WindowLayout:
    """Token order of one (height, width, window, shift) case, on one device."""

    height: int
    width: int
    window: int
    shift: int
    order: torch.Tensor  # (L,) layout position -> flat spatial index
    n_plain: int  # windows that need no shift mask; they come first
    edge_mask: torch.Tensor | None  # (n_edge, N, N) additive mask of the remaining windows

    @property
    def n_windows(self) -> int:
        return (self.height // self.window) * (self.width // self.window)


# Every cached tensor is built outside inference mode: the caches are shared with later training passes, which
# cannot save inference tensors for backward.
@lru_cache(maxsize=16)
@torch.inference_mode(False)
def relative_position_index(window: int) -> torch.Tensor:
    """(N*N,) index into the (2w-1)^2 bias table, as the official code builds it."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1).flatten()


def _region_ids(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(nW, N) region id of every token of the rolled map, windows row-major, as the official calculate_mask slices
    it: [0, -w), [-w, -s), [-s, end) on each axis."""
    nh, nw = height // window, width // window

    def region(coord: torch.Tensor, size: int) -> torch.Tensor:
        return (coord >= size - window).long() + (coord >= size - shift).long()

    ys = torch.arange(height).view(nh, 1, window, 1)
    xs = torch.arange(width).view(1, nw, 1, window)
    return (region(ys, height) * 3 + region(xs, width)).reshape(nh * nw, window * window)


def _mask_from_ids(ids: torch.Tensor) -> torch.Tensor:
    return (ids[:, None, :] != ids[:, :, None]).float() * MASK_VALUE


def official_shift_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(nW, N, N) mask in the official row-major window order (what official checkpoints store as attn_mask)."""
    return _mask_from_ids(_region_ids(height, width, window, shift))


@lru_cache(maxsize=64)
@torch.inference_mode(False)
def _layout_cpu(height: int, width: int, window: int, shift: int) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    nh, nw = height // window, width // window
    a, b, p, q = torch.meshgrid(
        torch.arange(nh), torch.arange(nw), torch.arange(window), torch.arange(window), indexing="ij"
    )
    # Coordinates in the rolled map; the token there comes from (y + shift, x + shift) of the input.
    ys, xs = a * window + p, b * window + q
    src = (((ys + shift) % height) * width + (xs + shift) % width).reshape(nh * nw, window * window)
    if shift == 0:
        return src.flatten(), nh * nw, None
    is_edge = (torch.arange(nh)[:, None] == nh - 1) | (torch.arange(nw)[None, :] == nw - 1)  # (nh, nw)
    window_rank = torch.argsort(is_edge.flatten().to(torch.int8), stable=True)
    n_plain = int((~is_edge).sum())
    edge_ids = _region_ids(height, width, window, shift)[window_rank][n_plain:]
    return src[window_rank].flatten(), n_plain, _mask_from_ids(edge_ids)


_device_layouts: dict[tuple, WindowLayout] = {}
_transitions: dict[tuple, torch.Tensor] = {}


@torch.inference_mode(False)
def get_layout(height: int, width: int, window: int, shift: int, device: torch.device, dtype: torch.dtype) -> WindowLayout:
    key = (height, width, window, shift, str(device), dtype)
    layout = _device_layouts.get(key)
    if layout is None:
        order, n_plain, mask = _layout_cpu(height, width, window, shift)
        layout = WindowLayout(
            height, width, window, shift, order.to(device), n_plain,
            None if mask is None else mask.to(device=device, dtype=dtype),
        )
        if len(_device_layouts) > 64:
            _device_layouts.clear()
        _device_layouts[key] = layout
    return layout


@torch.inference_mode(False)
def transition(src: WindowLayout | None, dst: WindowLayout | None) -> torch.Tensor:
    """Index that moves tokens from layout `src` to layout `dst` (None = plain spatial order) in one gather."""
    key = (
        None if src is None else (src.height, src.width, src.window, src.shift),
        None if dst is None else (dst.height, dst.width, dst.window, dst.shift),
        str((src or dst).order.device),
    )
    index = _transitions.get(key)
    if index is None:
        if src is None:
            index = dst.order
        else:
            inverse = torch.empty_like(src.order)
            inverse[src.order] = torch.arange(src.order.numel(), device=src.order.device)
            index = inverse if dst is None else inverse[dst.order]
        if len(_transitions) > 128:
            _transitions.clear()
        _transitions[key] = index
    return index

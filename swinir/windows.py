"""Window layouts for (shifted) window attention, recomputed per input size and cached (see `cache.py`).

The official network rolls the feature map, partitions it into windows, and undoes both after attention: four
copies per block. Here a *layout* is a single permutation of the flattened tokens that does the roll and the
partition at once; the residual stream stays in the current block's layout and moves to the next block's layout
with one gather.

The official shift mask gives every window of the rolled map one of four patterns, whatever the map's size: no
mask (inner windows), the bottom row's, the right column's and the corner's; each is a function of the position
inside the window only. A layout orders the windows by pattern, so attention runs as at most four groups, each with
one (heads, N, N) mask broadcast over its windows: no per-size mask tensor, no per-call mask copy, any number of
tiles per forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cache import cached

# The value the official code writes into the shift mask; kept so outputs match it exactly.
MASK_VALUE = -100.0
# Window groups in layout order: inner windows, bottom row, right column, bottom-right corner.
GROUPS = ("inner", "bottom", "right", "corner")


@dataclass(frozen=True)
class WindowLayout:
    """Token order of one (height, width, window, shift) case, on one device."""

    height: int
    width: int
    window: int
    shift: int
    order: torch.Tensor  # (L,) layout position -> flat spatial index
    group_ends: tuple[int, ...]  # end window of each of GROUPS (one group, all windows, when unshifted)

    @property
    def n_windows(self) -> int:
        return (self.height // self.window) * (self.width // self.window)

    @property
    def groups(self) -> list[tuple[int, int, int]]:
        """(pattern index, first window, end window) of each non-empty group."""
        out, start = [], 0
        for g, end in enumerate(self.group_ends):
            if end > start:
                out.append((g, start, end))
            start = end
        return out

    def spans(self, max_windows: int) -> list[tuple[int, int, int]]:
        """`groups` cut into runs of at most `max_windows` windows, (pattern index, first window, end window)."""
        return [(g, a, min(a + max_windows, stop)) for g, start, stop in self.groups
                for a in range(start, stop, max_windows)]


def relative_position_index(window: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N*N,) index into the (2w-1)^2 bias table, as the official code builds it."""

    def build() -> torch.Tensor:
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += window - 1
        rel[:, :, 1] += window - 1
        rel[:, :, 0] *= 2 * window - 1
        return rel.sum(-1).flatten().to(device)

    return cached(("relative_position_index", window), device, build)


def _region(coord: torch.Tensor, size: int, window: int, shift: int) -> torch.Tensor:
    """Official calculate_mask slices of one axis: [0, -w) -> 0, [-w, -s) -> 1, [-s, end) -> 2."""
    return (coord >= size - window).long() + (coord >= size - shift).long()


def _region_ids(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(nW, N) region id of every token of the rolled map, windows row-major."""
    nh, nw = height // window, width // window
    ys = torch.arange(height).view(nh, 1, window, 1)
    xs = torch.arange(width).view(1, nw, 1, window)
    ids = _region(ys, height, window, shift) * 3 + _region(xs, width, window, shift)
    return ids.reshape(nh * nw, window * window)


def _mask_from_ids(ids: torch.Tensor) -> torch.Tensor:
    return (ids[:, None, :] != ids[:, :, None]).float() * MASK_VALUE


def official_shift_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(nW, N, N) mask in the official row-major window order (what official checkpoints store as attn_mask)."""
    return _mask_from_ids(_region_ids(height, width, window, shift))


def shift_patterns(window: int, shift: int) -> torch.Tensor:
    """(4, N, N) additive masks of GROUPS, the same for every map size: the official mask of a 2x2-window map,
    whose four windows (row-major: inner, right, bottom, corner) are one of each group."""
    return official_shift_mask(2 * window, 2 * window, window, shift)[[0, 2, 1, 3]]


def _build_layout(height: int, width: int, window: int, shift: int, device: torch.device) -> WindowLayout:
    nh, nw = height // window, width // window
    a, b, p, q = torch.meshgrid(
        torch.arange(nh), torch.arange(nw), torch.arange(window), torch.arange(window), indexing="ij"
    )
    # Coordinates in the rolled map; the token there comes from (y + shift, x + shift) of the input.
    ys, xs = a * window + p, b * window + q
    src = (((ys + shift) % height) * width + (xs + shift) % width).reshape(nh * nw, window * window)
    if shift == 0:
        order, ends = src.flatten(), (nh * nw,)
    else:
        bottom = (torch.arange(nh)[:, None] == nh - 1).expand(nh, nw)
        right = (torch.arange(nw)[None, :] == nw - 1).expand(nh, nw)
        group = (bottom.long() + 2 * right.long()).flatten()
        rank = torch.argsort(group, stable=True)
        counts = torch.bincount(group, minlength=len(GROUPS))
        order, ends = src[rank].flatten(), tuple(int(v) for v in counts.cumsum(0))
    # int32 halves what a large layout holds; index_select takes it, forward and backward.
    index_dtype = torch.int32 if order.numel() < 2**31 else torch.int64
    return WindowLayout(height, width, window, shift, order.to(device=device, dtype=index_dtype), ends)


def get_layout(height: int, width: int, window: int, shift: int, device: torch.device) -> WindowLayout:
    return cached(
        ("layout", height, width, window, shift), device,
        lambda: _build_layout(height, width, window, shift, torch.device(device)),
    )


def _layout_key(layout: WindowLayout | None) -> tuple | None:
    return None if layout is None else (layout.height, layout.width, layout.window, layout.shift)


def transition(src: WindowLayout | None, dst: WindowLayout | None) -> torch.Tensor:
    """Index that moves tokens from layout `src` to layout `dst` (None = plain spatial order) in one gather."""
    if src is None:
        return dst.order

    def build() -> torch.Tensor:
        inverse = torch.empty_like(src.order)
        inverse[src.order.long()] = torch.arange(src.order.numel(), device=src.order.device, dtype=src.order.dtype)
        return inverse if dst is None else inverse[dst.order.long()]

    return cached(("transition", _layout_key(src), _layout_key(dst)), src.order.device, build)

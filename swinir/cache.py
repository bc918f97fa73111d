"""The one cache of the core: tensors recomputed per input size or per weights (window layouts, layout transitions,
attention masks, relative-position bias, head-padded weights), bounded in bytes per device, least recently used
out first.

A long-running ComfyUI server sees images of every size; a cache bounded by entry count alone grows with the square of
the sizes (a 2048 px layout holds tens of MB) and, on a GPU, keeps VRAM that ComfyUI's model management can neither
see nor free. Each device gets `limit_for(device)` bytes: `DEFAULT_LIMIT`, but never more than `BUDGET_SHARE` of
the engine's share of that device's memory
(`memory.device_share`; the engine's budget for activations is that share less this limit: `budget.memory_budget`).
`clear_caches()` empties it (the ComfyUI nodes call it when models are unloaded).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, TypeVar

import torch

from .memory import device_share

DEFAULT_LIMIT = 64 << 20
BUDGET_SHARE = 0.03

T = TypeVar("T")

_lock = threading.Lock()
_entries: dict[str, OrderedDict[tuple, tuple[Any, int]]] = {}
_held: dict[str, int] = {}
_limits: dict[str, int] = {}
_limit_override: int | None = None
_stats = {"hits": 0, "misses": 0, "evictions": 0}
# owner id -> keys (per device) of the entries made for it, so they go when the owner (a module) is freed.
_owned: dict[int, set[tuple[str, tuple]]] = {}


def _device_key(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return str(device)


def nbytes(value: Any) -> int:
    """Bytes held by a tensor, or by the tensors inside a tuple/list/dict/dataclass (storage size: an expanded view
    counts what it really holds)."""
    if isinstance(value, torch.Tensor):
        return value.untyped_storage().nbytes()
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if hasattr(value, "__dataclass_fields__"):
        return sum(nbytes(getattr(value, f)) for f in value.__dataclass_fields__)
    return 0


def limit_for(device: torch.device | str) -> int:
    """Bytes the cache may hold on `device`."""
    key = _device_key(device)
    if _limit_override is not None:
        return _limit_override
    if key not in _limits:
        _limits[key] = int(min(DEFAULT_LIMIT, BUDGET_SHARE * device_share(torch.device(key))))
    return _limits[key]


def set_limit(limit_bytes: int | None) -> None:
    """Bytes per device for every device (None: back to the default rule); evicts down to it now."""
    global _limit_override
    _limit_override = None if limit_bytes is None else max(0, int(limit_bytes))
    with _lock:
        for key in list(_entries):
            _evict(key, limit_for(key))


def _evict(key: str, limit: int) -> None:
    entries = _entries.get(key)
    while entries and _held[key] > limit:
        _, (_, size) = entries.popitem(last=False)
        _held[key] -= size
        _stats["evictions"] += 1


def cached(key: tuple, device: torch.device | str, build: Callable[[], T], owner: int | None = None) -> T:
    """The value stored under `key` for `device`, built (outside inference mode, so later training passes can use
    it, and without autograd: a cached mask that required grad would bar the fused attention kernels) and stored
    when missing. A value larger than the device's limit is returned without being stored."""
    dkey = _device_key(device)
    with _lock:
        entries = _entries.setdefault(dkey, OrderedDict())
        hit = entries.get(key)
        if hit is not None:
            entries.move_to_end(key)
            _stats["hits"] += 1
            return hit[0]
        _stats["misses"] += 1
    # inference_mode(False) turns grad mode back on; no_grad after it turns it off again.
    with torch.inference_mode(False), torch.no_grad():
        value = build()
    size = nbytes(value)
    limit = limit_for(dkey)
    if size <= limit:
        with _lock:
            entries = _entries.setdefault(dkey, OrderedDict())
            if key not in entries:
                entries[key] = (value, size)
                _held[dkey] = _held.get(dkey, 0) + size
                if owner is not None:
                    _owned.setdefault(owner, set()).add((dkey, key))
                _evict(dkey, limit)
    return value


def forget(owner: int) -> None:
    """Drop the entries made for `owner` (called when a model's attention module is freed: entries keyed on its
    weights could never be hit again)."""
    with _lock:
        for dkey, key in _owned.pop(owner, ()):
            hit = _entries.get(dkey, {}).pop(key, None)
            if hit is not None:
                _held[dkey] -= hit[1]


def clear_caches(device: torch.device | str | None = None) -> None:
    """Drop every cached tensor (of one device, or all); the next run rebuilds what it needs."""
    with _lock:
        keys = list(_entries) if device is None else [_device_key(device)]
        for key in keys:
            _entries.pop(key, None)
            _held.pop(key, None)
        for owned in _owned.values():
            owned.difference_update({k for k in owned if k[0] in keys})


def cached_bytes() -> dict[str, int]:
    """Bytes held now, per device."""
    with _lock:
        return {k: v for k, v in _held.items() if v}


def stats() -> dict[str, int]:
    """Hits, misses and evictions since start (for tests and benchmarks)."""
    with _lock:
        return dict(_stats)

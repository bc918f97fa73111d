"""The engine's memory budget on a device: its share of the device's memory, less what the cache may hold there.

Its own module so that the dependency runs one way: the cache sizes its limit from `memory.device_share`, and the
budget needs both.
"""

from __future__ import annotations

import torch

from .cache import limit_for
from .memory import device_share


def memory_budget(device: torch.device) -> int:
    """Bytes the engine may use for one forward pass on `device`: its share, less what the caches may hold."""
    return max(0, device_share(device) - limit_for(device))

"""Which device a run uses: a name checked against what this machine has."""

from __future__ import annotations

import torch

from .errors import InputError


def default_device() -> torch.device:
    """CUDA where this machine has it, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: torch.device | str | None, default: torch.device) -> torch.device:
    """The device to run on; an unusable one is an InputError naming the fix, not a driver traceback."""
    if device is None:
        return default
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device} requested but CUDA is not available here; use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"device {device} does not exist; this machine has {torch.cuda.device_count()} CUDA devices")
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise InputError(f"device {device} is not supported; use cpu or cuda")
    return device

"""The precisions the engine runs in: their names, whether this CPU has hardware for them, and the autocast that
applies one."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext

import torch

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native(dtype: torch.dtype) -> bool:
    """Whether this CPU computes `dtype` in hardware (oneDNN's own check: AVX-512 BF16 or AMX for bf16, AVX-512 FP16
    or AMX-FP16 for fp16). Without such units PyTorch emulates them, several times slower than fp32."""
    if dtype == torch.float32:
        return True
    check = {torch.bfloat16: "_is_mkldnn_bf16_supported", torch.float16: "_is_mkldnn_fp16_supported"}.get(dtype)
    try:
        return bool(getattr(torch.ops.mkldnn, check)())
    except (AttributeError, RuntimeError, TypeError):
        return True  # unknown (another build of torch): no claim either way, so no warning


_EMULATED_SAID: set[torch.dtype] = set()


def warn_if_emulated(device: torch.device, dtype: torch.dtype) -> None:
    """Say once per process when the precision asked for has no hardware on this CPU (the default model runs 7x
    slower in bf16 than in fp32 on an AVX2 CPU: bench/bench_precision.py). Through logging, not `warnings`: in ComfyUI
    0.3.75's server the warnings of its worker thread do not reach the console."""
    if device.type == "cpu" and dtype not in _EMULATED_SAID and not cpu_has_native(dtype):
        _EMULATED_SAID.add(dtype)
        name = next(k for k, v in PRECISIONS.items() if v == dtype)
        log.warning(
            "%s on this CPU is emulated (it has no AVX-512 %s or AMX units) and runs several times slower than fp32; "
            "choose fp32 precision", name, name.upper(),
        )


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Mixed precision in `dtype` on `device`; nothing for fp32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)

"""How much memory a forward pass needs, and how much the engine may use.

The estimate is calibrated on measured peaks (`python bench/bench_memory.py --calibrate`, recorded in
bench/RESULTS.md): fp32 inference on the CPU holds about 10 embed-dim-wide tensors per input pixel at the widest
point of the body (the residual stream, its window-gathered copy, norm, qkv and the MLP hidden layer; the
flash-attention kernel keeps no N x N scores), and two upscaled feature maps in the upsampler. A fixed
slack covers tensors small enough for the allocator to serve from its heap, which is not handed back at once.
It only has to be right within a small factor: the engine also catches out-of-memory errors and shrinks the tile.
"""

from __future__ import annotations

import torch

from .config import SwinIRConfig

SAFETY = 1.15
SLACK = 160 << 20  # bytes; measured peaks of small inputs exceed the per-pixel slope by up to ~150 MB
CPU_SHARE = 0.4  # of available RAM
CPU_CAP = 4 << 30  # larger tiles buy little on a compute-bound CPU and would crowd out everything else
CUDA_SHARE = 0.8  # of free device memory
# Peak RSS of a CPU run over the estimate while allocator.reuse_large_buffers() keeps freed blocks in the heap: the
# holes freed activations leave are not all refilled by the next ones (allocator.py says why), so the heap outgrows
# the live peak. Measured on the default model (bench/RESULTS.md): 1024² whole, 11.0 GB for an estimate of 3.35 GB;
# 544² tiles, 3.47 GB for 1.06 GB (fifth session). With PyTorch's huge-page blocks (allocator.hugepages_in_effect)
# a pass adds 1.35x to 1.95x its estimate (1024² whole 4.22 GiB, 768² whole 3.24, 528² tiles 1.81;
# bench/bench_hugepages.py, sixth session). Tiles sized with it keep the recycling's speed within the budget.
CPU_HEAP_RETENTION = 3.3
CPU_HEAP_RETENTION_HUGEPAGES = 2.0

# Upsamplers that widen to num_feat channels at the output resolution; two such maps are alive at their widest step.
_WIDE_UPSAMPLERS = ("pixelshuffle", "nearest+conv")


def bytes_per_input_pixel(config: SwinIRConfig, dtype: torch.dtype) -> float:
    c, s2 = config.embed_dim, config.scale**2
    body = c * (9 + config.mlp_ratio)
    wide = config.upsampler in _WIDE_UPSAMPLERS
    # The tail also keeps the body's output and the shallow features (about 3 embed-dim tensors).
    tail = s2 * (2 * config.num_feat if wide else config.in_chans) + 3 * c
    itemsize = torch.finfo(dtype).bits // 8
    return SAFETY * itemsize * max(body, tail)


def estimate_bytes(config: SwinIRConfig, pixels: int, dtype: torch.dtype = torch.float32) -> int:
    return int(bytes_per_input_pixel(config, dtype) * pixels) + SLACK


def largest_tile_pixels(config: SwinIRConfig, budget: int, dtype: torch.dtype = torch.float32) -> int:
    """Input pixels of the largest tile whose estimate fits `budget` (0 when even the slack does not)."""
    return max(0, int((budget - SLACK) / bytes_per_input_pixel(config, dtype)))


def heap_retention(device: torch.device) -> float:
    """How many times its estimate a forward pass really holds on `device` (1 where nothing is recycled)."""
    from . import allocator

    if device.type != "cpu" or not allocator.available():
        return 1.0
    return CPU_HEAP_RETENTION_HUGEPAGES if allocator.hugepages_in_effect() else CPU_HEAP_RETENTION


def estimate_budget(budget: int, device: torch.device) -> int:
    """What estimates may add up to on `device` for a pass to hold at most `budget` bytes (see heap_retention)."""
    return int(budget / heap_retention(device))


def available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def device_share(device: torch.device) -> int:
    """The engine's share of `device`'s free memory: for one forward pass and the caches together."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_SHARE)
    return int(min(available_ram() * CPU_SHARE, CPU_CAP))


def memory_budget(device: torch.device) -> int:
    """Bytes the engine may use for one forward pass on `device`: its share, less what the caches may hold."""
    from .cache import limit_for  # cache sizes its limit from device_share; imported late to keep one direction

    return max(0, device_share(device) - limit_for(device))

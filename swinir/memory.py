"""How much memory a forward pass needs, and how much the engine may use.

The estimate counts the live activations of the widest point of the network per input pixel (the block's
qkv/attention/MLP tensors in the body, or the upsampler's feature maps), times a safety factor. It only has to
be right within a small factor: the engine also catches out-of-memory errors and shrinks the tile.
"""

from __future__ import annotations

import torch

from .config import SwinIRConfig

SAFETY = 1.5
CPU_SHARE = 0.4  # of available RAM
CPU_CAP = 4 << 30  # larger tiles buy little on a compute-bound CPU and would crowd out everything else
CUDA_SHARE = 0.8  # of free device memory


def bytes_per_input_pixel(config: SwinIRConfig, dtype: torch.dtype) -> float:
    c, n = config.embed_dim, config.window_size**2
    heads = max(config.num_heads)
    # Residual stream, its gathered copy, norm, qkv (3C), attention output, MLP hidden (ratio*C), plus the
    # attention scores of one window group (heads*N per token).
    body = c * (6 + config.mlp_ratio) + heads * n
    s2 = config.scale**2
    tail = s2 * (3 * config.num_feat + config.in_chans) if config.scale > 1 else 2 * c
    itemsize = torch.finfo(dtype).bits // 8
    return SAFETY * itemsize * max(body, tail + c)


def estimate_bytes(config: SwinIRConfig, pixels: int, dtype: torch.dtype = torch.float32) -> int:
    return int(bytes_per_input_pixel(config, dtype) * pixels)


def available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def memory_budget(device: torch.device) -> int:
    """Bytes the engine may use for one forward pass on `device`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_SHARE)
    return int(min(available_ram() * CPU_SHARE, CPU_CAP))

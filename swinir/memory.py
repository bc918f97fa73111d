"""How much memory a forward pass needs, and how much the engine may use.

The estimate is calibrated on measured peaks (`python -m bench.bench_memory --calibrate`, recorded in
bench/RESULTS.md). At inference the network runs each transformer block chunk by chunk (`block_chunk_tokens`), so
the body holds a few embed-dim-wide tensors per input pixel (the residual stream, its window-gathered copy, the
shallow features, a stage's input and its convolution) plus the block's temporaries (norm, qkv, attention output,
the MLP's hidden layer) for one chunk only; the upsampler holds two upscaled feature maps. A fixed slack covers
tensors small enough for the allocator to serve from its heap, which is not handed back at once. It only has to be
right within a small factor: the engine also catches out-of-memory errors and shrinks the tile.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from .config import SwinIRConfig

SAFETY = 1.15
SLACK = 160 << 20  # bytes; measured peaks of small inputs exceed the per-pixel slope by up to ~150 MB
CPU_SHARE = 0.4  # of available RAM
CPU_CAP = 4 << 30  # larger tiles buy little on a compute-bound CPU and would crowd out everything else
CUDA_SHARE = 0.8  # of free device memory
# Peak RSS of a CPU pass over its estimate while allocator.reuse_large_buffers() keeps freed blocks in the heap. The
# blocks run in chunks, so the large buffers are all the stream's size and are reused: a whole 768² / 1024² pass of
# the default model holds 1.19 / 1.11x its estimate with default blocks, 1.07 / 1.12x with huge pages
# (bench/bench_hugepages.py, bench/RESULTS.md).
CPU_HEAP_RETENTION = 1.3

# Bytes of one embed-dim-wide activation per chunk of a transformer block at inference (network.py). On the CPU a
# chunk's working set (its slice of the stream in and out, norm, qkv, the MLP's hidden layer: about 8 such widths)
# then stays within half the last-level cache instead of streaming through memory: on a 32 MiB L3, 2 MiB chunks ran
# 1.4-1.55x faster than whole-image blocks for S and M, and 1-4 MiB are within 5 % of the best for both widths
# (bench/bench_chunks.py, bench/RESULTS.md). A GPU needs large launches to fill it, so its memory estimate keeps the
# whole image's temporaries up to this size.
LLC_SHARE_PER_CHUNK = 1 / 16
CPU_CHUNK_BYTES_RANGE = (1 << 20, 8 << 20)
CPU_CHUNK_BYTES_UNKNOWN_CACHE = 2 << 20
ACCELERATOR_CHUNK_BYTES = 1 << 30
# Embed-dim-wide tensors alive per input pixel across the body (measured 5.6-5.9 with chunked blocks), and per token
# of a block's chunk on top of the MLP's hidden layer (measured 3.7 with the hidden layer, S and M, whole-image blocks).
STREAM_WIDTHS = 6
BLOCK_TEMP_WIDTHS = 3

# Upsamplers that widen to num_feat channels at the output resolution; two such maps are alive at their widest step.
_WIDE_UPSAMPLERS = ("pixelshuffle", "nearest+conv")


def _itemsize(dtype: torch.dtype) -> int:
    return torch.finfo(dtype).bits // 8


def last_level_cache_bytes() -> int | None:
    """Size of the largest data cache of CPU 0, from Linux's sysfs (None elsewhere)."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        if text[-1:] in units and text[:-1].isdigit():
            sizes.append(int(text[:-1]) * units[text[-1]])
        elif text.isdigit():
            sizes.append(int(text))
    return max(sizes, default=None)


@functools.cache
def _cpu_chunk_bytes() -> int:
    llc = last_level_cache_bytes()
    if llc is None:
        return CPU_CHUNK_BYTES_UNKNOWN_CACHE
    low, high = CPU_CHUNK_BYTES_RANGE
    return min(high, max(low, int(llc * LLC_SHARE_PER_CHUNK)))


def block_chunk_bytes(device_type: str) -> int:
    """Bytes of one embed-dim-wide activation per chunk of a transformer block at inference on `device_type`."""
    return _cpu_chunk_bytes() if device_type == "cpu" else ACCELERATOR_CHUNK_BYTES


def block_chunk_tokens(width: int, itemsize: int, device_type: str) -> int:
    """Tokens (batch x window tokens) per chunk of a transformer block at inference on `device_type`."""
    return max(1, block_chunk_bytes(device_type) // (width * itemsize))


def bytes_per_input_pixel(config: SwinIRConfig, dtype: torch.dtype) -> float:
    """What a pass holds per input pixel for the whole image: the body's stream or the upsampler's maps."""
    c, s2 = config.embed_dim, config.scale**2
    wide = config.upsampler in _WIDE_UPSAMPLERS
    # The tail also keeps the body's output and the shallow features (about 3 embed-dim tensors).
    tail = s2 * (2 * config.num_feat if wide else config.in_chans) + 3 * c
    return SAFETY * _itemsize(dtype) * max(STREAM_WIDTHS * c, tail)


def _bytes_per_chunk_token(config: SwinIRConfig, dtype: torch.dtype) -> float:
    return SAFETY * _itemsize(dtype) * config.embed_dim * (BLOCK_TEMP_WIDTHS + config.mlp_ratio)


def estimate_bytes(config: SwinIRConfig, pixels: int, dtype: torch.dtype = torch.float32,
                   device_type: str = "cpu") -> int:
    """Peak bytes of one forward pass over `pixels` input pixels (one image, or tiles of one forward together)."""
    chunk = min(pixels, block_chunk_tokens(config.embed_dim, _itemsize(dtype), device_type))
    return int(bytes_per_input_pixel(config, dtype) * pixels + _bytes_per_chunk_token(config, dtype) * chunk) + SLACK


def largest_tile_pixels(config: SwinIRConfig, budget: int, dtype: torch.dtype = torch.float32,
                        device_type: str = "cpu") -> int:
    """Input pixels of the largest tile whose estimate fits `budget` (0 when even the slack does not)."""
    per_pixel, per_token = bytes_per_input_pixel(config, dtype), _bytes_per_chunk_token(config, dtype)
    chunk = block_chunk_tokens(config.embed_dim, _itemsize(dtype), device_type)
    room = budget - SLACK
    if room <= (per_pixel + per_token) * chunk:  # the tile is no larger than one chunk
        return max(0, int(room / (per_pixel + per_token)))
    return int((room - per_token * chunk) / per_pixel)


def heap_retention(device: torch.device) -> float:
    """How many times its estimate a forward pass really holds on `device` (1 where nothing is recycled)."""
    from . import allocator

    if device.type != "cpu" or not allocator.available():
        return 1.0
    return CPU_HEAP_RETENTION


def estimate_budget(budget: int, device: torch.device) -> int:
    """What estimates may add up to on `device` for a pass to hold at most `budget` bytes (see heap_retention)."""
    return int(budget / heap_retention(device))


def available_ram() -> int:
    """Bytes of RAM available without swapping: psutil's reading where it is installed (ComfyUI depends on it; it
    is the portable way on Windows and macOS), else Linux's /proc/meminfo, else a fixed 4 GiB."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return int(psutil.virtual_memory().available)
        except (OSError, RuntimeError):
            pass
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

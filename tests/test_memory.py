"""The memory estimate against the measured peak of real forward passes, and the auto tile it implies."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from testkit.peak_memory import forward_peak
from swinir import SwinIRConfig, memory
from swinir.engine import auto_tile, default_overlap
from swinir.tiling import plan_tiles
from swinir.training.trainer import LIGHTWEIGHT_S

DEFAULT_CONFIG = SwinIRConfig(task="lightweight_sr", **LIGHTWEIGHT_S)

# Two stages of two blocks (plain and shifted windows) are enough: activation memory per pixel does not grow with
# depth, only with width and the upsampler. Sizes keep every activation above glibc's mmap threshold, so the peak is the live tensors.
CASES = [
    pytest.param(dict(embed_dim=60, depths=[2, 2], num_heads=[6, 6], task="lightweight_sr",
                      upsampler="pixelshuffledirect", scale=2), 512, id="S-width-x2-body"),
    pytest.param(dict(embed_dim=180, depths=[2, 2], num_heads=[6, 6], upsampler="pixelshuffle", scale=4), 256,
                 id="M-width-x4-upsampler"),
    pytest.param(dict(embed_dim=180, depths=[2, 2], num_heads=[6, 6], task="color_denoise", upsampler="", scale=1), 256,
                 id="M-width-denoise"),
]


@pytest.mark.parametrize("config,size", CASES)
def test_estimate_covers_measured_peak_without_gross_waste(config: dict, size: int) -> None:
    # A fresh interpreter per measurement: its peak RSS (VmHWM) is not this pytest process's.
    measured = forward_peak(config, size, threads=1)["used"]
    estimate = memory.estimate_bytes(SwinIRConfig(**config), size * size)
    assert measured <= estimate, f"estimate {estimate / 2**20:.0f} MiB is below the measured {measured / 2**20:.0f}"
    # Over-estimating costs tiles (and so speed): the per-pixel part stays within 1.35x of the whole measured peak.
    per_pixel_part = estimate - memory.SLACK
    assert per_pixel_part <= 1.35 * measured, f"{per_pixel_part / 2**20:.0f} MiB vs measured {measured / 2**20:.0f}"


def test_largest_tile_fits_its_budget() -> None:
    cfg = DEFAULT_CONFIG
    for budget in (256 << 20, 1 << 30, 4 << 30):
        pixels = memory.largest_tile_pixels(cfg, budget)
        assert memory.estimate_bytes(cfg, pixels) <= budget < memory.estimate_bytes(cfg, pixels + 64)
    assert memory.largest_tile_pixels(cfg, memory.SLACK) == 0


def test_auto_tile_sizes_cpu_tiles_for_the_recycled_heap() -> None:
    """At the CPU's 4 GiB cap, with the heap's retention, the default configuration runs 768² and 1024² whole and
    2048² in 2x2 evened-out tiles, each pass's real peak within the cap."""
    cfg = DEFAULT_CONFIG
    retention = memory.CPU_HEAP_RETENTION
    budget = int(memory.CPU_CAP / retention)
    for side, count in ((768, 1), (1024, 1), (2048, 4)):
        tile = auto_tile(cfg, side, side, budget, torch.float32)
        plan = plan_tiles(side, side, tile, default_overlap(cfg.window_size), cfg.window_size)
        assert len(plan) == count, (side, tile, len(plan))
        area = plan.tile_height * plan.tile_width
        assert retention * memory.estimate_bytes(cfg, area) <= memory.CPU_CAP
    # Few tiles, little overlap: 2048² computes at most 1.05x its pixels.
    assert count * area <= 1.05 * 2048 * 2048


def test_heap_retention_only_where_the_heap_recycles() -> None:
    from swinir import allocator

    assert memory.heap_retention(torch.device("meta")) == 1.0
    expected = memory.CPU_HEAP_RETENTION if allocator.available() else 1.0
    assert memory.heap_retention(torch.device("cpu")) == expected
    assert memory.estimate_budget(1 << 30, torch.device("meta")) == 1 << 30
    assert memory.estimate_budget(1 << 30, torch.device("cpu")) == int((1 << 30) / expected)


@pytest.mark.parametrize("llc, chunk", [(None, 2 << 20), (32 << 20, 2 << 20), (8 << 20, 1 << 20), (512 << 20, 8 << 20)])
def test_cpu_block_chunks_follow_the_last_level_cache(llc, chunk, monkeypatch) -> None:
    monkeypatch.setattr(memory, "last_level_cache_bytes", lambda: llc)
    memory._cpu_chunk_bytes.cache_clear()
    try:
        assert memory.block_chunk_bytes("cpu") == chunk
        assert memory.block_chunk_tokens(60, 4, "cpu") == chunk // 240
    finally:
        memory._cpu_chunk_bytes.cache_clear()
    assert memory.block_chunk_bytes("cuda") == memory.ACCELERATOR_CHUNK_BYTES


def test_last_level_cache_is_read_from_the_system() -> None:
    if not Path("/sys/devices/system/cpu/cpu0/cache").is_dir():
        pytest.skip("no sysfs cache description on this system")
    assert memory.last_level_cache_bytes() >= 256 << 10



def test_available_ram_is_psutils_reading_where_installed(monkeypatch) -> None:
    """Windows and macOS have no /proc/meminfo: psutil (a ComfyUI dependency) is the portable reading, used wherever
    it is installed; without it, Linux's /proc/meminfo, and the fixed 4 GiB only for a system with neither."""
    psutil = pytest.importorskip("psutil")
    calls: list[int] = []
    real = psutil.virtual_memory

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(psutil, "virtual_memory", counted)
    reading, total = memory.available_ram(), real().total
    assert calls and 0 < reading <= total
    monkeypatch.setitem(__import__("sys").modules, "psutil", None)  # not installed: import raises ImportError
    if Path("/proc/meminfo").is_file():
        without = memory.available_ram()
        assert without != 4 << 30 and abs(without - reading) < total // 10  # free memory moves between reads
    else:
        assert memory.available_ram() == 4 << 30

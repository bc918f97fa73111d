"""The memory estimate against the measured peak of real forward passes, and the auto tile it implies."""

from __future__ import annotations

import pytest
import torch

from bench.bench_memory import forward_peak
from swinir import SwinIRConfig, memory
from swinir.engine import auto_tile, default_overlap
from swinir.tiling import plan_tiles
from swinir.train import LIGHTWEIGHT_S

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


def test_auto_tile_keeps_the_activations_flat_from_1024_to_2048() -> None:
    """With the CPU's 4 GiB cap, the default configuration runs 1024² whole and 2048² in four evened-out tiles of
    nearly the same area: what the bench's +20 % memory criterion needs."""
    cfg = DEFAULT_CONFIG
    budget = memory.CPU_CAP
    assert auto_tile(cfg, 1024, 1024, budget, torch.float32) == 1024
    tile = auto_tile(cfg, 2048, 2048, budget, torch.float32)
    plan = plan_tiles(2048, 2048, tile, default_overlap(cfg.window_size), cfg.window_size)
    assert len(plan) == 4
    assert plan.tile_height * plan.tile_width <= 1.1 * 1024 * 1024

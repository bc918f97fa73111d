"""How "auto" picks the tile: the memory bound everywhere, the cache cap on the CPU only, read from sysfs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import swinir
from swinir import autotile, memory
from swinir.autotile import auto_tile, cache_tile, last_level_cache_bytes, memory_tile

S = swinir.SwinIRConfig(
    task="lightweight_sr", scale=2, embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4, upsampler="pixelshuffledirect"
)
M = swinir.SwinIRConfig(task="classical_sr", scale=2, embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6)
JPEG = swinir.SwinIRConfig(task="color_jpeg", scale=1, window_size=7, img_range=255.0, upsampler="",
                           embed_dim=180, depths=(6,) * 6, num_heads=(6,) * 6)
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
BIG = 1 << 40


def _cache_dir(root: Path, entries: list[tuple[int, str, str]]) -> Path:
    for i, (level, kind, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    return root


def test_last_level_cache_from_sysfs(tmp_path: Path) -> None:
    root = _cache_dir(tmp_path / "a", [(1, "Data", "48K"), (1, "Instruction", "64K"), (2, "Unified", "2048K"),
                                       (3, "Unified", "32768K")])
    assert last_level_cache_bytes.__wrapped__(root) == 32 << 20
    only_l2 = _cache_dir(tmp_path / "b", [(1, "Data", "32K"), (2, "Unified", "1024K")])
    assert last_level_cache_bytes.__wrapped__(only_l2) == 1 << 20
    assert last_level_cache_bytes.__wrapped__(tmp_path / "missing") is None
    broken = _cache_dir(tmp_path / "c", [(2, "Unified", "lots")])
    assert last_level_cache_bytes.__wrapped__(broken) is None


def test_cache_tile_follows_cache_and_width() -> None:
    cache = 32 << 20
    s, m = cache_tile(S, torch.float32, cache), cache_tile(M, torch.float32, cache)
    # One activation of the tile fits CACHE_SHARE of the cache: 60 channels allow about sqrt(3) x the side of 180.
    for cfg, side in ((S, s), (M, m)):
        assert side % cfg.window_size == 0
        assert side * side * cfg.embed_dim * 4 <= autotile.CACHE_SHARE * cache
        assert (side + cfg.window_size) ** 2 * cfg.embed_dim * 4 > autotile.CACHE_SHARE * cache
    assert 1.6 < s / m < 1.9
    assert cache_tile(S, torch.float32, 4 * cache) == pytest.approx(2 * s, abs=S.window_size)
    # bf16 halves the bytes of an activation; window-7 models get window-7 multiples.
    assert cache_tile(S, torch.bfloat16, cache) > s
    assert cache_tile(JPEG, torch.float32, cache) % 7 == 0
    # Never below the floor, whatever the cache.
    assert cache_tile(M, torch.float32, 1 << 10) == autotile.MIN_CACHE_TILE_WINDOWS * 8
    assert cache_tile(S, torch.float32, None) is None


def test_auto_caps_only_on_the_cpu() -> None:
    cache = 32 << 20
    cap = cache_tile(S, torch.float32, cache)
    assert auto_tile(S, 1024, 1024, BIG, torch.float32, CPU, cache) == cap
    assert auto_tile(S, 1024, 1024, BIG, torch.float32, CUDA, cache) == 1024  # a GPU: the whole image
    small = cap - 2 * S.window_size
    assert auto_tile(S, small, small, BIG, torch.float32, CPU, cache) == small  # fits the cache: whole
    # Memory still bounds it: a small budget gives a tile smaller than the cache cap.
    budget = memory.estimate_bytes(S, 96 * 96)
    assert auto_tile(S, 1024, 1024, budget, torch.float32, CPU, 1 << 34) == memory_tile(S, 1024, 1024, budget,
                                                                                           torch.float32) <= 96


def test_engine_uses_the_rule(monkeypatch) -> None:
    """restore(tile='auto') on the CPU runs the tiles the rule gives (the ComfyUI nodes' tile_size 0 is this auto)."""
    torch.manual_seed(0)
    tiny = swinir.SwinIR(swinir.SwinIRConfig(task="lightweight_sr", scale=2, embed_dim=8, depths=(1,), num_heads=(2,),
                                             upsampler="pixelshuffledirect")).eval()
    monkeypatch.setattr(autotile, "CACHE_SHARE", 128 * 128 * 8 * 4 / (1 << 20))  # a 128 px cap for a 1 MiB cache
    monkeypatch.setattr(autotile, "MIN_CACHE_TILE_WINDOWS", 4)
    monkeypatch.setattr(autotile, "last_level_cache_bytes", lambda: 1 << 20)
    totals = []
    swinir.restore(tiny, torch.rand(1, 3, 300, 300), progress=lambda d, n: totals.append(n), memory_budget=BIG)
    assert totals[-1] > 1
    totals.clear()
    swinir.restore(tiny, torch.rand(1, 3, 120, 120), progress=lambda d, n: totals.append(n), memory_budget=BIG)
    assert totals[-1] == 1


def _tiny():
    torch.manual_seed(0)
    return swinir.SwinIR(swinir.SwinIRConfig(task="lightweight_sr", scale=2, embed_dim=8, depths=(2,), num_heads=(2,),
                                             upsampler="pixelshuffledirect")).eval()


def test_compile_option_runs_the_compiled_model_once_made(monkeypatch) -> None:
    """compile=True goes through torch.compile (here its 'eager' backend: inductor's C++ build takes minutes on this
    CPU; bench/bench_tiles.py --compile measures the real one), made once per model, same output, and the state
    dict does not gain the compiled wrapper."""
    made = []
    real = torch.compile

    def spy(model, **kw):
        made.append(kw)
        return real(model, backend="eager", **kw)

    monkeypatch.setattr(torch, "compile", spy)
    model = _tiny()
    keys = list(model.state_dict())
    x = torch.rand(1, 3, 40, 48)
    eager = swinir.restore(model, x)
    for _ in range(2):
        assert torch.allclose(swinir.restore(model, x, compile=True), eager, atol=1e-6)
    assert made == [{"dynamic": False}]
    assert list(model.state_dict()) == keys


def test_compile_failure_is_one_clear_error(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("InductorError: CppCompileError: C++ compile error\nlong trace")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: broken)
    with pytest.raises(swinir.SwinIRError, match="torch.compile failed .*CppCompileError.*without compile"):
        swinir.restore(_tiny(), torch.rand(1, 3, 16, 16), compile=True)

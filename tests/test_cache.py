"""The core's tensor cache: bounded in bytes per device, least recently used out first, emptied on request, and
still hit by a repeated size (tiles of one plan, frames of a video)."""

from __future__ import annotations

import gc
import warnings

import pytest
import torch

import swinir
from swinir import cache, memory
from swinir.budget import memory_budget

pytestmark = pytest.mark.usefixtures("single_thread")

CONFIG = swinir.SwinIRConfig(
    task="lightweight_sr", scale=2, in_chans=3, window_size=8, embed_dim=12, depths=(2, 2), num_heads=(2, 2),
    upsampler="pixelshuffledirect",
)


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return swinir.SwinIR(CONFIG).eval()


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear_caches()
    yield
    cache.set_limit(None)
    cache.clear_caches()


def _live_tensor_bytes() -> int:
    gc.collect()
    total, seen = 0, set()
    with warnings.catch_warnings():  # isinstance() on some of torch's deprecated module aliases warns
        warnings.simplefilter("ignore")
        objects = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    for obj in objects:
        try:
            if not isinstance(obj, torch.nn.Parameter):
                storage = obj.untyped_storage()
                if storage.data_ptr() not in seen:
                    seen.add(storage.data_ptr())
                    total += storage.nbytes()
        except (RuntimeError, ReferenceError):
            continue
    return total


SIZES = [(176 + 8 * i, 304 - 8 * i) for i in range(16)]  # about 1 MB of layouts and transitions each


def test_many_sizes_stay_within_the_byte_limit(model):
    limit = 2 << 20
    cache.set_limit(limit)
    before = _live_tensor_bytes()
    for h, w in SIZES:
        swinir.restore(model, torch.rand(1, 3, h, w), tile=None, memory_budget=1 << 40)
        assert cache.cached_bytes().get("cpu", 0) <= limit
    held = cache.cached_bytes()["cpu"]
    assert held > limit // 2  # the cache is in use, up to its limit
    grown = _live_tensor_bytes() - before
    # What stays alive after the runs is the cache (plus a little slack), not one set of tensors per size.
    assert grown <= limit + (1 << 20), f"{grown / 2**20:.1f} MiB alive after {len(SIZES)} sizes"
    assert cache.stats()["evictions"] > 0

    swinir.clear_caches()
    assert cache.cached_bytes() == {}
    assert _live_tensor_bytes() - before <= 1 << 20


def test_without_a_bound_each_size_would_keep_its_tensors(model):
    """The measure above is meaningful: with a large limit the same runs keep far more alive."""
    cache.set_limit(1 << 34)
    before = _live_tensor_bytes()
    for h, w in SIZES:
        swinir.restore(model, torch.rand(1, 3, h, w), tile=None, memory_budget=1 << 40)
    assert _live_tensor_bytes() - before > 4 * (2 << 20)


def test_repeated_size_hits_the_cache(model):
    x = torch.rand(1, 3, 72, 88)
    swinir.restore(model, x, tile=None, memory_budget=1 << 40)
    misses = cache.stats()["misses"]
    for _ in range(3):  # frames of a video
        swinir.restore(model, torch.rand(1, 3, 72, 88), tile=None, memory_budget=1 << 40)
    assert cache.stats()["misses"] == misses


def test_tiles_of_one_plan_share_their_entries(model):
    one_tile = torch.rand(1, 3, 64, 64)
    swinir.restore(model, one_tile, tile=None, memory_budget=1 << 40)
    misses = cache.stats()["misses"]
    cache.clear_caches()
    start = cache.stats()["misses"]
    swinir.restore(model, torch.rand(1, 3, 200, 200), tile=64, overlap=16, memory_budget=1 << 40)
    # Every 64 px tile needs what the single 64 px image needed; only the blend weights are new.
    new_misses = cache.stats()["misses"] - start
    assert new_misses <= misses + 4, (new_misses, misses)


def test_an_entry_larger_than_the_limit_is_not_stored():
    cache.set_limit(1000)
    value = cache.cached(("big",), "cpu", lambda: torch.zeros(1000))
    assert value.numel() == 1000 and cache.cached_bytes() == {}
    small = cache.cached(("small",), "cpu", lambda: torch.zeros(10))
    assert cache.cached(("small",), "cpu", lambda: torch.ones(10)) is small


def test_least_recently_used_goes_first():
    cache.set_limit(3 * 400)
    for name in "abc":
        cache.cached((name,), "cpu", lambda: torch.zeros(100))  # 400 bytes each
    cache.cached(("a",), "cpu", lambda: torch.ones(100))  # touch a: b is now the oldest
    cache.cached(("d",), "cpu", lambda: torch.zeros(100))
    assert cache.cached(("a",), "cpu", lambda: torch.ones(100)).sum() == 0  # still the cached one
    assert cache.cached(("b",), "cpu", lambda: torch.ones(100)).sum() == 100  # rebuilt: b was evicted


def test_default_limit_is_small_and_a_share_of_the_budget():
    cpu = torch.device("cpu")
    assert cache.limit_for(cpu) <= cache.DEFAULT_LIMIT
    assert cache.limit_for(cpu) <= cache.BUDGET_SHARE * memory.device_share(cpu) + 1
    # The engine's activation budget leaves room for what the cache may hold.
    assert memory_budget(cpu) == memory.device_share(cpu) - cache.limit_for(cpu)


def test_entries_of_a_freed_model_go_with_it():
    """A model reloaded for every prompt leaves no masks behind: entries keyed on its weights go when it is freed."""
    x = torch.rand(1, 3, 40, 40)
    torch.manual_seed(1)
    first = swinir.SwinIR(CONFIG).eval()
    swinir.restore(first, x, memory_budget=1 << 40)
    with_first = cache.cached_bytes()["cpu"]
    second = swinir.SwinIR(CONFIG).eval()
    swinir.restore(second, x, memory_budget=1 << 40)
    with_both = cache.cached_bytes()["cpu"]
    assert with_both > with_first  # the second model's masks; the layouts of the size are shared
    del second
    gc.collect()
    assert cache.cached_bytes()["cpu"] == with_first

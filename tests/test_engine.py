"""The restoration engine, `swinir.restore`: exact whole-image output, seamless tiles, progress and cancel,
out-of-memory recovery, automatic tiling, input checks, channel handling, precision, devices and batches.

Most tests use tiny random-weight models (fast, and every parameter matters); the seam test uses the pack's
trained default model on Set14 images from ../shared/data and skips when that folder is absent.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import swinir
from swinir import memory
from swinir.precision import PRECISIONS
from swinir.channels import rgb_to_ycbcr
from swinir.network import pad_to_window
from swinir.tiling import TilePlan, align_down, align_up, plan_tiles, tile_weight
from shared_data import DATA, need
from testkit.reference import max_diff, randomize_

pytestmark = pytest.mark.usefixtures("single_thread")

TOL = 1e-5
# Tiled vs whole-image output of a tiny random-weight model: tiles see less context, so they differ a little near
# tile borders, but a misplaced or mis-weighted tile differs by O(0.1-1) over whole regions.
TILED_MAX = 0.025
TILED_MEAN = 1e-3


# --------------------------------------------------------------------------------------------------- helpers


def tiny_model(
    kind: str = "sr", *, window: int = 8, in_chans: int = 3, seed: int = 0, tame: bool = True
) -> swinir.SwinIR:
    """A fast random-weight SwinIR: 'sr' is an x2 lightweight-SR layout, 'jpeg' a de-JPEG layout (no upsampler,
    img_range 255). Its last layer is scaled so outputs stay mostly inside [0, 1] (clamping would hide errors)."""
    if kind == "sr":
        cfg = swinir.SwinIRConfig(
            task="lightweight_sr", scale=2, in_chans=in_chans, window_size=window, embed_dim=12, depths=(2,),
            num_heads=(2,), upsampler="pixelshuffledirect",
        )
    elif kind == "jpeg":
        cfg = swinir.SwinIRConfig(
            task="color_jpeg" if in_chans == 3 else "gray_jpeg", scale=1, in_chans=in_chans, window_size=window,
            img_range=255.0, embed_dim=12, depths=(2,), num_heads=(2,), upsampler="", jpeg_quality=10,
        )
    else:
        raise ValueError(kind)
    model = swinir.SwinIR(cfg).eval()
    randomize_(model, seed, cfg.img_range, cfg.upsampler)
    if not tame:
        return model
    last = model.upsample[0] if cfg.upsampler == "pixelshuffledirect" else model.conv_last
    with torch.no_grad():
        last.weight.mul_(0.25)
        last.bias.mul_(0.25)
        if cfg.upsampler == "pixelshuffledirect" and in_chans == 1:
            last.bias.add_(0.5)  # gray models have no mean to add back
    return model


def direct(model: swinir.SwinIR, x: torch.Tensor) -> torch.Tensor:
    """What restore must return for an image that fits in one tile: the network itself, clamped."""
    with torch.no_grad():
        return model(x).clamp(0, 1)


@contextmanager
def forward_calls(model: torch.nn.Module):
    """Records the input of every forward call that completed."""
    calls: list[torch.Tensor] = []
    handle = model.register_forward_hook(lambda m, args, out: calls.append(args[0].detach().clone()))
    try:
        yield calls
    finally:
        handle.remove()


@contextmanager
def memory_limit(model: torch.nn.Module, max_pixels: int, after: int = 0, error=torch.OutOfMemoryError):
    """Simulated memory budget: a forward on an input of more than `max_pixels` pixels raises `error` (by default
    OutOfMemoryError) once `after` forwards have completed (memory that becomes tight while a run is going)."""
    state = {"done": 0, "ooms": 0}

    def pre(m, args):
        h, w = args[0].shape[-2:]
        if h * w > max_pixels and state["done"] >= after:
            state["ooms"] += 1
            raise error(f"simulated: {h}x{w} is over {max_pixels} pixels")

    def post(m, args, out):
        state["done"] += 1

    handles = [model.register_forward_pre_hook(pre), model.register_forward_hook(post)]
    try:
        yield state
    finally:
        for h in handles:
            h.remove()


def upscaled(planes: torch.Tensor, scale: int) -> torch.Tensor:
    """Planes the model does not see (chroma, alpha) at the output size: bicubic, clamped to [0, 1]."""
    if scale == 1:
        return planes
    return F.interpolate(planes, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def image(n: int, c: int, h: int, w: int, seed: int = 0, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """A smooth-ish random image (noise plus gradients) so neighbouring pixels are related, as in photos."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, c, h, w, generator=g)
    yy = torch.linspace(0, 1, h).view(1, 1, h, 1)
    xx = torch.linspace(0, 1, w).view(1, 1, 1, w)
    x = 0.5 * noise + 0.25 * yy + 0.25 * xx
    return lo + (hi - lo) * x


@pytest.fixture(scope="module")
def models() -> dict[int, swinir.SwinIR]:
    """Window 7: a de-JPEG layout; window 8: an x2 super-resolution layout."""
    return {7: tiny_model("jpeg", window=7, seed=1), 8: tiny_model("sr", window=8, seed=2)}


# ------------------------------------------------------------------------------------ shapes and exactness

SQUARES = [(n, n) for n in range(1, 21)]
NON_SQUARE = (
    [(1, n) for n in (2, 3, 5, 8, 9, 14, 20)]
    + [(n, 1) for n in (2, 4, 7, 11, 16, 20)]
    + [(2, 3), (3, 2), (4, 11), (11, 4), (5, 9), (9, 5), (6, 15), (15, 6), (7, 8), (8, 7), (7, 14), (14, 7),
       (8, 16), (16, 8), (10, 17), (17, 10), (12, 19), (19, 12), (13, 20), (20, 13), (3, 18), (18, 3), (9, 16)]
)
ODD = [(45, 61), (33, 17), (61, 45), (17, 33), (50, 29)]
SIZES = SQUARES + NON_SQUARE + ODD


def test_output_shape_range_dtype() -> None:
    for window, kind in ((7, "jpeg"), (8, "sr")):
        model = tiny_model(kind, window=window, tame=False)
        s = model.config.scale
        x = image(2, 3, 13, 21, seed=window)
        y = swinir.restore(model, x)
        assert y.shape == (2, 3, 13 * s, 21 * s)
        assert y.dtype == torch.float32 and y.device.type == "cpu"
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        raw = model(x).detach()
        assert float(raw.min()) < 0 or float(raw.max()) > 1, "test premise: the raw output leaves [0, 1]"
        # float64 and float16 inputs are accepted and the output is still float32
        assert swinir.restore(model, x.double()).dtype == torch.float32
        assert swinir.restore(model, x.half()).dtype == torch.float32


@pytest.mark.parametrize("window", [7, 8])
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_sizes_whole_and_tiled(models, window: int, size: tuple[int, int]) -> None:
    model = models[window]
    s = model.config.scale
    h, w = size
    x = image(1, 3, h, w, seed=h * 100 + w)
    expected = direct(model, x)
    whole = swinir.restore(model, x)
    assert whole.shape == (1, 3, h * s, w * s)
    assert max_diff(whole, expected) <= TOL

    with forward_calls(model) as calls:
        tiled = swinir.restore(model, x, tile=16)  # raised to the 4-window minimum: 28 (window 7) or 32 (window 8)
    assert tiled.shape == whole.shape
    assert torch.isfinite(tiled).all()
    min_tile = 4 * window
    padded = (align_up(h, window), align_up(w, window))
    if max(padded) > min_tile:
        assert len(calls) > 1, "the forced tile should split this image"
        assert all(c.shape[-2] <= min_tile and c.shape[-1] <= min_tile for c in calls)
        assert max_diff(tiled, whole) <= TILED_MAX
        assert float((tiled - whole).abs().mean()) <= TILED_MEAN
    else:
        assert len(calls) == 1
        assert max_diff(tiled, whole) <= TOL


# ------------------------------------------------------------------------------------------------ tile plans


def _plan_cases(window: int):
    for height in range(window, 26 * window, 3 * window):
        for width in (window, 5 * window, 13 * window, 25 * window):
            for tile in (4 * window, 6 * window, 8 * window, 11 * window, 40 * window):
                for overlap in (0, 1, window, 2 * window + 3, 4 * window, 9 * window):
                    yield height, width, tile, overlap


@pytest.mark.parametrize("window", [7, 8])
def test_plan_geometry(window: int) -> None:
    checked = 0
    for height, width, tile, overlap in _plan_cases(window):
        plan = plan_tiles(height, width, tile, overlap, window)
        case = f"plan({height}x{width}, tile={tile}, overlap={overlap}, window={window})"
        assert plan.tile % window == 0 and plan.tile <= tile, case
        wanted = min(align_up(overlap, window), align_down(tile // 2, window))
        assert plan.overlap >= wanted, case
        tiles = plan.tiles
        assert len(tiles) == len(plan) == len(plan.ys) * len(plan.xs), case
        # Tiles are evened out: no larger than the limit, and no more of them than the limit itself would need.
        assert plan.tile_height <= min(plan.tile, height) and plan.tile_width <= min(plan.tile, width), case
        for origins, length in ((plan.ys, height), (plan.xs, width)):
            limit = min(plan.tile, length)
            needed = 1 if limit >= length else max(2, math.ceil((length - plan.overlap) / (limit - plan.overlap)))
            assert len(origins) <= needed, f"{case}: {len(origins)} tiles where {needed} of the limit's size suffice"
        for t in tiles:
            # full size (never a skinny remainder), window-aligned, inside the image
            assert (t.height, t.width) == (plan.tile_height, plan.tile_width), case
            assert t.y % window == 0 and t.x % window == 0, case
            assert t.height % window == 0 and t.width % window == 0, case
            assert t.y >= 0 and t.x >= 0 and t.y + t.height <= height and t.x + t.width <= width, case
        for origins, size, length in ((plan.ys, tiles[0].height, height), (plan.xs, tiles[0].width, width)):
            assert list(origins) == sorted(set(origins)), case
            assert origins[0] == 0 and origins[-1] + size == length, f"{case}: does not cover the image"
            for a, b in zip(origins, origins[1:]):
                assert a + size - b >= wanted, f"{case}: neighbours at {a} and {b} overlap by {a + size - b}"
        covered = torch.zeros(height, width, dtype=torch.bool)
        for t in tiles:
            covered[t.y : t.y + t.height, t.x : t.x + t.width] = True
        assert covered.all(), case
        checked += 1
    assert checked > 500


def _weight_cases():
    for window in (7, 8):
        for scale in (1, 2, 4):
            for height, width, tile, overlap in (
                (7 * window, 9 * window, 4 * window, 4 * window),
                (20 * window, 13 * window, 8 * window, 4 * window),
                (23 * window, 23 * window, 6 * window, 2 * window),
                (7 * window, 30 * window, 4 * window, window),
                (17 * window, 10 * window, 5 * window, 0),
                (12 * window, 12 * window, 12 * window, 4 * window),
                (9 * window, 26 * window, 7 * window, 3 * window),
            ):
                yield window, scale, height, width, tile, overlap


def _accumulated_weight(plan, scale: int) -> torch.Tensor:
    total = torch.zeros(plan.height * scale, plan.width * scale, dtype=torch.float64)
    for t in plan.tiles:
        total[t.y * scale : (t.y + t.height) * scale, t.x * scale : (t.x + t.width) * scale] += (
            tile_weight(plan, t, scale).double()
        )
    return total


@pytest.mark.parametrize("case", list(_weight_cases()), ids=lambda c: "w{}-x{}-{}x{}-t{}-o{}".format(*c))
def test_blend_weights_sum_to_one(case) -> None:
    window, scale, height, width, tile, overlap = case
    total = _accumulated_weight(plan_tiles(height, width, tile, overlap, window), scale)
    assert float((total - 1).abs().max()) <= 1e-5, f"weights sum to {float(total.min())}..{float(total.max())}"


def test_blend_weights_sum_to_one_where_three_tiles_overlap() -> None:
    """Tiles spaced less than half a tile apart: a pixel can lie in three tiles along one axis."""
    # plan_tiles evens tiles out and rarely spaces them this closely, so the plan is written out by hand.
    plan = TilePlan(140, 140, 84, 42, 84, 84, (0, 21, 56), (0, 21, 56))
    assert plan.ys[0] + 84 > plan.ys[2], "test premise: tiles 0 and 2 overlap"
    total = _accumulated_weight(plan, 1)
    assert float((total - 1).abs().max()) <= 1e-5, f"weights sum to {float(total.min())}..{float(total.max())}"


@pytest.mark.parametrize("case", list(_weight_cases()), ids=lambda c: "w{}-x{}-{}x{}-t{}-o{}".format(*c))
def test_blend_weights_hide_inner_borders(case) -> None:
    window, scale, height, width, tile, overlap = case
    plan = plan_tiles(height, width, tile, overlap, window)
    for t in plan.tiles:
        wt = tile_weight(plan, t, scale)
        assert wt.shape == (t.height * scale, t.width * scale)
        assert float(wt.min()) >= 0 and float(wt.max()) <= 1 + 1e-6
        # Inner borders: the first quarter of the overlap with a neighbour is context only (weight 0); a tile that
        # does not overlap its neighbour (overlap 0) has no context to hide.
        i, j = plan.ys.index(t.y), plan.xs.index(t.x)
        n_top = (plan.ys[i - 1] + t.height - t.y) * scale // 4 if i > 0 else 0
        n_bottom = (t.y + t.height - plan.ys[i + 1]) * scale // 4 if i + 1 < len(plan.ys) else 0
        n_left = (plan.xs[j - 1] + t.width - t.x) * scale // 4 if j > 0 else 0
        n_right = (t.x + t.width - plan.xs[j + 1]) * scale // 4 if j + 1 < len(plan.xs) else 0
        h, w = wt.shape
        for name, part, n in (("top", wt[:n_top], n_top), ("bottom", wt[h - n_bottom :], n_bottom),
                              ("left", wt[:, :n_left], n_left), ("right", wt[:, w - n_right :], n_right)):
            if n:
                assert float(part.abs().max()) == 0, f"{name} border of {t} in {plan}"
        # Outer borders (the image edge) belong to the tile alone: full weight in the image's corners.
        if i == 0 and j == 0:
            assert float(wt[0, 0]) == 1.0
        if i == len(plan.ys) - 1 and j == len(plan.xs) - 1:
            assert float(wt[-1, -1]) == 1.0


@pytest.mark.parametrize("window", [7, 8])
def test_blend_profile_is_smooth(window: int) -> None:
    scale, overlap = 2, 32
    for height, width, tile in ((24 * window, 24 * window, 8 * window), (14 * window, 31 * window, 12 * window)):
        plan = plan_tiles(height, width, tile, overlap, window)
        assert len(plan.ys) > 1 and len(plan.xs) > 1
        for t in plan.tiles:
            wt = tile_weight(plan, t, scale)
            step = max(float((wt[1:] - wt[:-1]).abs().max()), float((wt[:, 1:] - wt[:, :-1]).abs().max()))
            assert step <= 0.2, f"{t}: weight jumps by {step:.3f} between adjacent pixels"


# ------------------------------------------------------------------------------- seams with the trained model


@pytest.fixture(scope="module")
def default_model() -> swinir.SwinIR:
    return swinir.load_model(swinir.default_model_path())


def _read_rgb(path: Path) -> torch.Tensor:
    from PIL import Image

    arr = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None].contiguous()


@pytest.mark.parametrize("name", ["facex2.png", "comicx2.png"])
def test_no_seams_with_trained_model(default_model, name: str) -> None:
    path = need(DATA / "Set14" / "LR_bicubic" / "X2" / name, "the seam test needs Set14")
    x = _read_rgb(path)
    window = default_model.config.window_size
    h, w = x.shape[-2:]
    tile = 96
    overlap = swinir.engine.default_overlap(window)
    plan = plan_tiles(align_up(h, window), align_up(w, window), tile, overlap, window)
    assert len(plan.ys) >= 2 and len(plan.xs) >= 2, "the tile must split the image at least 2x2"
    whole = swinir.restore(default_model, x, tile=None, memory_budget=1 << 40)
    with forward_calls(default_model) as calls:
        tiled = swinir.restore(default_model, x, tile=tile)
    assert len(calls) == len(plan)
    value = psnr(tiled, whole)
    assert value >= 50.0, f"{name}: tiled vs whole PSNR {value:.2f} dB"
    # No visible seam: no pixel differs by half an 8-bit step.
    assert max_diff(tiled, whole) < 0.5 / 255


# ------------------------------------------------------------------------------------ progress and cancel


@pytest.mark.parametrize("batch", [1, 2])
def test_progress_once_per_tile(models, batch: int) -> None:
    model = models[8]
    x = image(batch, 3, 70, 90)
    seen: list[tuple[int, int]] = []
    with forward_calls(model) as calls:
        swinir.restore(model, x, tile=32, progress=lambda d, t: seen.append((d, t)))
    per_image = len(plan_tiles(72, 96, 32, 32, 8))
    total = batch * per_image
    assert len(calls) == total > batch
    assert seen == [(i, total) for i in range(1, total + 1)]


def test_progress_counts_every_plane_of_a_per_channel_run() -> None:
    model = tiny_model("sr", in_chans=1, seed=3)
    seen: list[tuple[int, int]] = []
    with forward_calls(model) as calls:
        swinir.restore(model, image(1, 3, 40, 40), tile=32, gray_mode="per_channel",
                       progress=lambda d, t: seen.append((d, t)))
    total = 3 * len(plan_tiles(40, 40, 32, 32, 8))
    assert len(calls) == total
    assert seen == [(i, total) for i in range(1, total + 1)]


def test_progress_single_tile() -> None:
    model = tiny_model("sr", seed=4)
    seen: list[tuple[int, int]] = []
    swinir.restore(model, image(1, 3, 20, 20), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 1)]


def test_raising_progress_aborts(models) -> None:
    model = models[8]

    class Stop(Exception):
        pass

    def progress(done: int, total: int) -> None:
        if done == 2:
            raise Stop("user closed the window")

    with forward_calls(model) as calls, pytest.raises(Stop, match="user closed"):
        swinir.restore(model, image(1, 3, 80, 80), tile=32, progress=progress)
    assert len(calls) == 2


@pytest.mark.parametrize("k", [0, 1, 3])
def test_cancel_stops_after_k_tiles(models, k: int) -> None:
    model = models[8]
    with forward_calls(model) as calls:
        with pytest.raises(swinir.Cancelled):
            swinir.restore(model, image(1, 3, 80, 80), tile=32, cancel=lambda: len(calls) >= k)
    assert len(calls) <= k + 1
    assert len(plan_tiles(80, 80, 32, 32, 8)) > k + 1


def test_cancel_whole_image_and_cancelled_is_a_swinir_error(models) -> None:
    model = models[8]
    assert issubclass(swinir.Cancelled, swinir.SwinIRError)
    with forward_calls(model) as calls, pytest.raises(swinir.Cancelled):
        swinir.restore(model, image(1, 3, 20, 20), cancel=lambda: True)
    assert calls == []


def test_cancel_never_true_completes(models) -> None:
    model = models[8]
    x = image(1, 3, 50, 50)
    out = swinir.restore(model, x, tile=32, cancel=lambda: False)
    assert max_diff(out, swinir.restore(model, x, tile=32)) <= TOL


# ------------------------------------------------------------------------------------------ out of memory
# On a random-weights model the OOM-recovered output is compared with the untiled output by max abs difference
# (TILED_MAX) and mean difference (TILED_MEAN), as for any tiled run.


def test_oom_shrinks_tiles_and_completes(models) -> None:
    model = models[8]
    x = image(1, 3, 64, 64, seed=5)
    whole = swinir.restore(model, x)
    limit = 40 * 40
    seen: list[tuple[int, int]] = []
    with memory_limit(model, limit) as state, forward_calls(model) as calls:
        out = swinir.restore(model, x, tile=64, progress=lambda d, t: seen.append((d, t)))
    assert state["ooms"] >= 1
    assert len(calls) > 1 and all(c.shape[-2] * c.shape[-1] <= limit for c in calls), "smaller tiles are used"
    assert out.shape == whole.shape and torch.isfinite(out).all()
    assert max_diff(out, whole) <= TILED_MAX
    assert float((out - whole).abs().mean()) <= TILED_MEAN
    assert seen[-1][0] == seen[-1][1], f"progress ended at {seen[-1]}"
    assert [d for d, _ in seen] == list(range(1, len(seen) + 1))
    assert len(seen) == seen[-1][1]


def test_oom_on_auto_tile_falls_back_to_tiles(models) -> None:
    model = models[8]
    x = image(1, 3, 64, 64, seed=6)
    whole = swinir.restore(model, x)
    with memory_limit(model, 40 * 40) as state, forward_calls(model) as calls:
        out = swinir.restore(model, x)
    assert state["ooms"] == 1 and len(calls) > 1
    assert max_diff(out, whole) <= TILED_MAX


def test_oom_midway_keeps_finished_tiles(models) -> None:
    """Memory gets tight after two 64px tiles: the run goes on at 32px, and the new tiles that lie inside the
    fully weighted area of a finished tile are not run again."""
    model = models[8]
    x = image(1, 3, 128, 128, seed=7)
    whole = swinir.restore(model, x)
    big = plan_tiles(128, 128, 64, 32, 8)
    small = plan_tiles(128, 128, 32, 32, 8)
    seen: list[tuple[int, int]] = []
    with memory_limit(model, 32 * 32, after=2) as state, forward_calls(model) as calls:
        out = swinir.restore(model, x, tile=64, progress=lambda d, t: seen.append((d, t)))
    assert state["ooms"] == 1
    assert [tuple(c.shape[-2:]) for c in calls[:2]] == [(64, 64), (64, 64)]
    rerun = calls[2:]
    assert all(tuple(c.shape[-2:]) == (32, 32) for c in rerun)
    # The first small tile lies inside the first big tile's full-weight area: it must not run again.
    first = pad_to_window(x, 8)[..., :32, :32]
    assert not any(torch.equal(c, first) for c in rerun), "a tile finished before the OOM was run again"
    assert len(rerun) < len(small)
    assert len(big) > 2
    # Progress: one tick per tile, ending at done == total.
    assert [d for d, _ in seen] == list(range(1, len(seen) + 1))
    assert seen[-1][0] == seen[-1][1]
    assert max_diff(out, whole) <= TILED_MAX
    assert float((out - whole).abs().mean()) <= TILED_MEAN


def test_oom_in_a_batch_shrinks_once(models) -> None:
    """Once a tile size ran out of memory, the rest of the run keeps the smaller tile: every further image of the
    batch does not first fail again at the size that is known not to fit (on a GPU each failed try costs time,
    and the progress total jumps back: 9/10 is followed by 10/18)."""
    model = models[8]
    x = image(3, 3, 64, 64, seed=34)
    seen: list[tuple[int, int]] = []
    with memory_limit(model, 40 * 40) as state:
        out = swinir.restore(model, x, tile=64, progress=lambda d, t: seen.append((d, t)))
    assert out.shape == (3, 3, 128, 128) and seen[-1][0] == seen[-1][1]
    assert state["ooms"] == 1, f"{state['ooms']} out-of-memory errors for one too-large tile size"


def test_oom_at_smallest_tile_is_a_clear_error(models) -> None:
    model = models[8]
    with memory_limit(model, 10 * 10), pytest.raises(swinir.SwinIRError, match="(?i)memory") as info:
        swinir.restore(model, image(1, 3, 64, 64), tile=64)
    assert not isinstance(info.value, torch.OutOfMemoryError)


def test_custom_oom_exceptions(models) -> None:
    model = models[8]
    x = image(1, 3, 64, 64, seed=8)

    def pre(m, args):
        if args[0].shape[-1] > 32:
            raise MemoryError("host allocator")

    handle = model.register_forward_pre_hook(pre)
    try:
        out = swinir.restore(model, x, tile=64, oom_exceptions=(MemoryError,))
        with pytest.raises(MemoryError):
            swinir.restore(model, x, tile=64)  # not an OOM kind the caller asked to catch
    finally:
        handle.remove()
    assert max_diff(out, swinir.restore(model, x)) <= TILED_MAX


def accelerator_oom(message: str) -> BaseException:
    """What newer PyTorch raises for some CUDA allocation failures: an AcceleratorError, not an OutOfMemoryError."""
    return torch.AcceleratorError(f"CUDA error: out of memory ({message})")


def test_accelerator_oom_shrinks_tiles_like_any_oom(models) -> None:
    model = models[8]
    x = image(1, 3, 64, 64, seed=35)
    whole = swinir.restore(model, x)
    with memory_limit(model, 40 * 40, error=accelerator_oom) as state, forward_calls(model) as calls:
        out = swinir.restore(model, x, tile=64)
    assert state["ooms"] == 1
    assert len(calls) > 1 and all(c.shape[-2] * c.shape[-1] <= 40 * 40 for c in calls)
    assert max_diff(out, whole) <= TILED_MAX


@pytest.mark.parametrize("error", [
    lambda m: RuntimeError(f"shape mismatch ({m})"),
    lambda m: torch.AcceleratorError(f"CUDA error: an illegal memory access was encountered ({m})"),
], ids=["RuntimeError", "AcceleratorError"])
def test_other_device_errors_are_not_taken_for_oom(models, error) -> None:
    model = models[8]
    with memory_limit(model, 40 * 40, error=error) as state, pytest.raises(RuntimeError, match=r"\(simulated"):
        swinir.restore(model, image(1, 3, 64, 64, seed=36), tile=64)
    assert state["ooms"] == 1, "a failure that is not an OOM was retried with smaller tiles"


def test_is_oom_names_the_hosts_oom_kinds(models) -> None:
    """ComfyUI's newer releases have their own test (comfy.model_management.is_oom); the engine asks it."""
    model = models[8]
    x = image(1, 3, 64, 64, seed=37)
    asked: list[BaseException] = []

    def host_is_oom(error: BaseException) -> bool:
        asked.append(error)
        return "ran out" in str(error)

    with memory_limit(model, 40 * 40, error=lambda m: RuntimeError(f"the device ran out ({m})")) as state:
        out = swinir.restore(model, x, tile=64, is_oom=host_is_oom)
    assert state["ooms"] == 1 and len(asked) == 1
    assert max_diff(out, swinir.restore(model, x)) <= TILED_MAX


@pytest.mark.parametrize("base", [Exception, BaseException], ids=["Exception", "BaseException"])
def test_an_interrupt_from_progress_passes_through(models, base) -> None:
    """ComfyUI's InterruptProcessingException is an Exception in 0.3.75 and a BaseException in newer releases;
    raised by the progress hook, it ends the run either way, at the tile it was raised at."""
    interrupt = type("InterruptProcessingException", (base,), {})
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            raise interrupt()

    with pytest.raises(interrupt):
        swinir.restore(models[8], image(1, 3, 64, 64, seed=38), tile=32, overlap=8, progress=progress)
    assert seen == [1, 2]


def test_preview_shows_the_image_as_tiles_finish(models) -> None:
    model = models[8]
    x = image(1, 3, 64, 48, seed=39)
    uncovered: list[int] = []
    last: list[torch.Tensor] = []

    def preview(canvas) -> None:
        uncovered.append(int((canvas.weight[..., : canvas.height, : canvas.width] == 0).sum()))
        last[:] = [canvas.image(1 << 16)]

    out = swinir.restore(model, x, tile=32, overlap=8, preview=preview)
    assert len(uncovered) == len(plan_tiles(64, 48, 32, 8, 8))
    assert uncovered == sorted(uncovered, reverse=True) and uncovered[0] > 0 == uncovered[-1]
    assert max_diff(last[0].unsqueeze(0), out) <= 1e-6  # the last preview is the result
    small = swinir.engine.Canvas(torch.ones(1, 3, 128, 96), torch.ones(1, 1, 128, 96), 120, 90).image(30)
    assert max(small.shape[-2:]) <= 30


# ---------------------------------------------------------------------------------------------- auto tile


def test_auto_tile_with_tiny_budget(models) -> None:
    model = models[8]
    x = image(1, 3, 96, 96, seed=9)
    whole = direct(model, x)
    budget = memory.estimate_bytes(model.config, 40 * 40)
    with forward_calls(model) as calls:
        out = swinir.restore(model, x, memory_budget=budget)
    assert len(calls) > 1
    assert all(c.shape[-2] * c.shape[-1] <= 40 * 40 for c in calls)
    assert max_diff(out, whole) <= TILED_MAX
    assert float((out - whole).abs().mean()) <= TILED_MEAN


def test_auto_tile_with_huge_budget(models) -> None:
    model = models[8]
    x = image(1, 3, 96, 96, seed=10)
    for tile in (None, "auto", 0):
        with forward_calls(model) as calls:
            out = swinir.restore(model, x, tile=tile, memory_budget=1 << 40)
        assert len(calls) == 1
        assert max_diff(out, direct(model, x)) <= TOL


# -------------------------------------------------------------------------------------------- bad input

BAD_INPUTS = [
    pytest.param(lambda: torch.zeros(0, 3, 8, 8), {}, "empty", id="empty-batch"),
    pytest.param(lambda: torch.full((1, 3, 8, 8), float("nan")), {}, "NaN", id="nan"),
    pytest.param(lambda: torch.zeros(1, 3, 8, 8).index_fill_(2, torch.tensor([3]), float("inf")), {}, "infinite",
                 id="inf"),
    pytest.param(lambda: torch.rand(1, 8, 8, 3), {}, "NHWC|channels-last|permute", id="nhwc"),
    pytest.param(lambda: torch.rand(3, 8, 8), {}, "NCHW", id="3d"),
    pytest.param(lambda: torch.rand(8, 8), {}, "NCHW", id="2d"),
    pytest.param(lambda: torch.rand(1, 3, 0, 5), {}, "no pixels", id="zero-height"),
    pytest.param(lambda: torch.rand(1, 3, 5, 0), {}, "no pixels", id="zero-width"),
    pytest.param(lambda: torch.zeros(1, 3, 8, 8, dtype=torch.uint8), {}, "float", id="uint8"),
    pytest.param(lambda: torch.zeros(1, 3, 8, 8, dtype=torch.int64), {}, "float", id="int64"),
    pytest.param(lambda: np.zeros((1, 3, 8, 8), np.float32), {}, "torch.Tensor", id="numpy"),
    pytest.param(lambda: torch.rand(1, 3, 8, 8), {"precision": "fp8"}, "precision.*fp32", id="precision"),
    pytest.param(lambda: torch.rand(1, 3, 8, 8), {"tile": -5}, "tile", id="negative-tile"),
    pytest.param(lambda: torch.rand(1, 3, 8, 8), {"tile": "big"}, "tile", id="string-tile"),
]


@pytest.mark.parametrize("make, kwargs, message", BAD_INPUTS)
def test_bad_input(models, make, kwargs, message) -> None:
    model = models[8]
    with forward_calls(model) as calls, pytest.raises(swinir.InputError, match=message):
        swinir.restore(model, make(), **kwargs)
    assert calls == [], "the model must not run on bad input"


def test_bad_gray_mode_is_an_input_error() -> None:
    """Like a bad precision, a bad gray_mode is the caller's input error (an InputError, a SwinIRError)."""
    model = tiny_model("sr", in_chans=1, seed=11)
    with pytest.raises(swinir.InputError, match="gray_mode"):
        swinir.restore(model, image(1, 3, 8, 8), gray_mode="average")


# ---------------------------------------------------------------------------------------------- channels


@contextmanager
def input_channels(model: torch.nn.Module):
    seen: list[int] = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    try:
        yield seen
    finally:
        handle.remove()


def test_gray_model_on_rgb_luma() -> None:
    model = tiny_model("sr", in_chans=1, seed=12)
    x = image(1, 3, 23, 30, seed=13, lo=0.3, hi=0.7)
    with input_channels(model) as seen:
        out = swinir.restore(model, x, gray_mode="luma")
    assert seen == [1]
    assert out.shape == (1, 3, 46, 60)
    assert float(out.min()) > 0 and float(out.max()) < 1, "test premise: nothing was clamped"
    ycc_in = rgb_to_ycbcr(x)
    ycc_out = rgb_to_ycbcr(out)
    assert max_diff(ycc_out[:, 1:], upscaled(ycc_in[:, 1:], 2)) <= TOL, "chroma must be carried over"
    with torch.no_grad():
        y = model(ycc_in[:, :1])
    assert max_diff(ycc_out[:, :1], y) <= TOL, "luma must be the model's output on Y"


def test_gray_model_on_rgb_luma_scale1() -> None:
    model = tiny_model("jpeg", in_chans=1, window=7, seed=14)
    x = image(1, 3, 20, 17, seed=15, lo=0.3, hi=0.7)
    out = swinir.restore(model, x)
    assert float(out.min()) > 0 and float(out.max()) < 1
    ycc_in, ycc_out = rgb_to_ycbcr(x), rgb_to_ycbcr(out)
    assert max_diff(ycc_out[:, 1:], ycc_in[:, 1:]) <= TOL
    with torch.no_grad():
        assert max_diff(ycc_out[:, :1], model(ycc_in[:, :1])) <= TOL


def test_gray_model_on_rgb_per_channel() -> None:
    model = tiny_model("sr", in_chans=1, seed=16)
    x = image(1, 3, 19, 26, seed=17)
    with input_channels(model) as seen:
        out = swinir.restore(model, x, gray_mode="per_channel")
    assert seen == [1, 1, 1]
    expected = torch.cat([direct(model, x[:, i : i + 1]) for i in range(3)], dim=1)
    assert max_diff(out, expected) <= TOL
    assert max_diff(out, swinir.restore(model, x, gray_mode="luma")) > 1e-3, "the two modes differ"


def test_rgb_model_on_gray_image() -> None:
    model = tiny_model("sr", seed=18)
    x = image(1, 1, 21, 18, seed=19)
    with input_channels(model) as seen:
        out = swinir.restore(model, x)
    assert seen == [3]
    assert out.shape == (1, 1, 42, 36)
    with torch.no_grad():
        expected = model(x.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True).clamp(0, 1)
    assert max_diff(out, expected) <= TOL


@pytest.mark.parametrize("kind", ["sr", "jpeg"])
def test_rgba_keeps_alpha(kind: str) -> None:
    model = tiny_model(kind, window=8, seed=20)
    s = model.config.scale
    rgb = image(1, 3, 22, 27, seed=21)
    alpha = (image(1, 1, 22, 27, seed=22) > 0.5).float() * 0.8 + 0.1
    with input_channels(model) as seen:
        out = swinir.restore(model, torch.cat([rgb, alpha], dim=1))
        tiled = swinir.restore(model, torch.cat([rgb, alpha], dim=1), tile=32, overlap=8)
    assert set(seen) == {3}, "the model must never see the alpha channel"
    assert out.shape == (1, 4, 22 * s, 27 * s)
    assert max_diff(out[:, :3], direct(model, rgb)) <= TOL
    assert max_diff(out[:, 3:], upscaled(alpha, s)) <= TOL
    if s == 1:
        assert max_diff(out[:, 3:], alpha) <= TOL
    assert max_diff(tiled[:, 3:], out[:, 3:]) <= TOL


def test_gray_alpha_on_rgb_model() -> None:
    model = tiny_model("sr", seed=23)
    gray, alpha = image(1, 1, 16, 16, seed=24), image(1, 1, 16, 16, seed=25)
    with input_channels(model) as seen:
        out = swinir.restore(model, torch.cat([gray, alpha], dim=1))
    assert seen == [3]
    assert out.shape == (1, 2, 32, 32)
    assert max_diff(out[:, 1:], upscaled(alpha, 2)) <= TOL


# --------------------------------------------------------------------------------------------- precision


def _cpu_autocast_works(dtype: torch.dtype) -> str | None:
    """None when CPU autocast to `dtype` runs a convolution; else why not (found by trying)."""
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
            y = conv(torch.rand(1, 3, 8, 8))
    except (RuntimeError, TypeError) as e:
        return f"CPU autocast to {dtype} is not supported by torch {torch.__version__}: {e}"
    if y.dtype != dtype:
        return f"CPU autocast to {dtype} left a convolution in {y.dtype} in torch {torch.__version__}"
    return None


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_reduced_precision_is_close_to_fp32(models, caplog, precision: str, dtype: torch.dtype) -> None:
    reason = _cpu_autocast_works(dtype)
    if reason:
        pytest.skip(reason)
    for model in models.values():
        x = image(1, 3, 30, 37, seed=26)
        ref = swinir.restore(model, x)
        with caplog.at_level("WARNING", logger="swinir.engine"):
            out = swinir.restore(model, x, precision=precision)
        assert _said(caplog, "redone in fp32") == []  # no overflow here, so no fallback
        assert out.dtype == torch.float32 and out.shape == ref.shape and torch.isfinite(out).all()
        diff = max_diff(out, ref)
        assert diff > 0, f"{precision} gave bit-identical output: it did not run in reduced precision"
        assert diff <= 0.05 and float((out - ref).abs().mean()) <= 5e-3, f"{precision} max diff {diff}"


def _said(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name in ("swinir.engine", "swinir.precision") and text in r.getMessage()]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_emulated_precision_on_the_cpu_says_to_choose_fp32(models, monkeypatch, caplog, precision: str) -> None:
    model, x = models[8], image(1, 3, 16, 16, seed=40)
    assert swinir.precision.cpu_has_native(torch.float32) is True
    assert isinstance(swinir.precision.cpu_has_native(PRECISIONS[precision]), bool)
    monkeypatch.setattr(swinir.precision, "_EMULATED_SAID", set())
    monkeypatch.setattr(swinir.precision, "cpu_has_native", lambda dtype: True)
    with caplog.at_level("WARNING", logger="swinir.precision"):
        swinir.restore(model, x, precision=precision)  # a CPU with the units: nothing to say
        assert _said(caplog, "emulated") == []
        monkeypatch.setattr(swinir.precision, "cpu_has_native", lambda dtype: dtype == torch.float32)
        swinir.restore(model, x)  # fp32: nothing to say
        assert _said(caplog, "emulated") == []
        for _ in range(2):
            swinir.restore(model, x, precision=precision)
    said = _said(caplog, "emulated")
    assert len(said) == 1, f"said once per process, got {said}"
    assert said[0].startswith(f"{precision} on this CPU is emulated") and "choose fp32" in said[0]


def _overflowing_model() -> swinir.SwinIR:
    """Finite in fp32 but its first features exceed fp16's range (65504): scaled up 1e6x, scaled back at the end."""
    model = tiny_model("sr", seed=27)
    with torch.no_grad():
        model.conv_first.weight.mul_(1e6)
        model.conv_first.bias.mul_(1e6)
        model.upsample[0].weight.mul_(1e-6)
    return model


def test_fp16_overflow_falls_back_to_fp32(caplog) -> None:
    reason = _cpu_autocast_works(torch.float16)
    if reason:
        pytest.skip(reason)
    model = _overflowing_model()
    x = image(1, 3, 24, 29, seed=28)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.float16):
        raw16 = model(pad_to_window(x, 8))
    assert not torch.isfinite(raw16).all(), "test premise: this model overflows in fp16"
    ref = swinir.restore(model, x)
    inside = ((ref > 0.01) & (ref < 0.99)).float().mean()
    assert inside > 0.3, "test premise: the fp32 output is not just clamped values"
    with caplog.at_level("WARNING", logger="swinir.engine"):
        out = swinir.restore(model, x, precision="fp16")
        assert len(_said(caplog, "redone in fp32")) == 1
        assert torch.isfinite(out).all()
        assert max_diff(out, ref) <= TOL
        tiled = swinir.restore(model, x, precision="fp16", tile=32, overlap=8)
    assert len(_said(caplog, "redone in fp32")) == 2, "said once per run, not once per tile"
    assert max_diff(tiled, swinir.restore(model, x, tile=32, overlap=8)) <= TOL


# ------------------------------------------------------------------------------------------------- device


def test_device_cpu(models) -> None:
    model = models[8]
    x = image(1, 3, 17, 23, seed=29)
    ref = swinir.restore(model, x)
    for device in ("cpu", torch.device("cpu")):
        out = swinir.restore(model, x, device=device)
        assert out.device.type == "cpu" and max_diff(out, ref) <= TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (torch.cuda.is_available() is False)")
def test_device_cuda_from_cpu_model(models) -> None:
    model = models[8]
    x = image(2, 3, 40, 45, seed=30)
    ref = swinir.restore(model, x)
    out = swinir.restore(model, x, device="cuda", tile=32)
    assert out.device.type == "cpu" and out.dtype == torch.float32
    assert next(model.parameters()).device.type == "cpu", "the model goes back to its own device"
    tiled_ref = swinir.restore(model, x, tile=32)
    assert max_diff(out, tiled_ref) <= 1e-3
    assert max_diff(swinir.restore(model, x, device="cuda"), ref) <= 1e-3
    out16 = swinir.restore(model, x, device="cuda", precision="fp16")
    assert torch.isfinite(out16).all() and max_diff(out16, ref) <= 0.1


# -------------------------------------------------------------------------------------------------- batch


def test_batch_equals_single_calls(models) -> None:
    for model in models.values():
        x = image(3, 3, 35, 42, seed=31)
        for tile in (None, 28):
            batch = swinir.restore(model, x, tile=tile)
            singles = torch.cat([swinir.restore(model, x[i : i + 1], tile=tile) for i in range(3)])
            assert max_diff(batch, singles) <= 1e-6
            assert max_diff(batch[1], batch[0]) > 0.01, "different images give different outputs"


def test_tile_batch_does_not_change_output(models) -> None:
    model = models[8]
    x = image(1, 3, 60, 70, seed=32)
    one = swinir.restore(model, x, tile=32, tile_batch=1)
    with forward_calls(model) as calls:
        four = swinir.restore(model, x, tile=32, tile_batch=4)
    assert any(c.shape[0] > 1 for c in calls)
    assert max_diff(one, four) <= TOL


def test_model_unchanged_after_restore(models) -> None:
    model = models[7]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {k: p.requires_grad for k, p in model.named_parameters()}
    training = model.training
    x = image(2, 3, 30, 30, seed=33)
    swinir.restore(model, x, tile=28, precision="bf16")
    swinir.restore(model, x, device="cpu")
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]) and after[k].device == v.device and after[k].dtype == v.dtype, k
    assert {k: p.requires_grad for k, p in model.named_parameters()} == grads
    assert model.training == training
    assert all(p.grad is None for p in model.parameters())

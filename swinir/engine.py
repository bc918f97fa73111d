"""`restore`: run a SwinIR model over images of any size with seamless tiles and bounded memory."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch

from . import memory
from .channels import GRAY_MODES, channel_plan
from .errors import Cancelled, InputError, SwinIRError
from .allocator import reuse_large_buffers
from .budget import memory_budget as device_budget
from .devices import resolve_device
from .image_checks import check_images
from .network import SwinIR, pad_to_window
from .precision import PRECISIONS, autocast, warn_if_emulated
from .tiling import TilePlan, align_down, plan_tiles, tile_weight

log = logging.getLogger(__name__)

DEFAULT_OVERLAP_WINDOWS = 4
MIN_TILE_WINDOWS = 4

Progress = Callable[[int, int], None]


@dataclass
class Canvas:
    """The plane being restored, as far as its tiles are done: what a preview shows while a long run goes on."""

    acc: torch.Tensor  # (1, C, H', W') weighted sum of the finished tiles, padded output size
    weight: torch.Tensor  # (1, 1, H', W') their summed blend weights
    height: int  # output size without the window padding
    width: int

    def image(self, max_side: int) -> torch.Tensor:
        """(C, h, w) in [0, 1], at most `max_side` pixels a side (every k-th pixel: cheap at any size); what no
        finished tile covers yet is black."""
        step = max(1, -(-max(self.height, self.width) // max(1, max_side)))
        acc = self.acc[0, :, : self.height : step, : self.width : step]
        weight = self.weight[0, :, : self.height : step, : self.width : step]
        return (acc / weight.clamp_min(1e-12)).clamp_(0, 1)


class _Counter:
    """Tiles done and planned; the plan can grow when an out-of-memory error shrinks the tiles."""

    def __init__(self, total: int, callback: Progress | None,
                 preview: Callable[[Canvas], None] | None = None) -> None:
        self.done, self.total, self.callback, self.preview = 0, total, callback, preview
        self.canvas: Canvas | None = None

    def tick(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)
        if self.preview is not None and self.canvas is not None:
            self.preview(self.canvas)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is a device running out of memory: torch's OutOfMemoryError, or the AcceleratorError newer
    PyTorch raises for some allocation failures (CUDA error 2, cudaErrorMemoryAllocation)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    accelerator_error = getattr(torch, "AcceleratorError", None)
    return (accelerator_error is not None and isinstance(error, accelerator_error)
            and (getattr(error, "error_code", None) == 2 or "out of memory" in str(error).lower()))


def default_overlap(window: int) -> int:
    return DEFAULT_OVERLAP_WINDOWS * window


def compiled(model: SwinIR) -> Callable[[torch.Tensor], torch.Tensor]:
    """`torch.compile` of the model, made once per model (static shapes: the tiles of a plan share one size)."""
    fn = model.__dict__.get("_swinir_compiled")
    if fn is None:
        fn = torch.compile(model, dynamic=False)
        # Through __dict__: as a module attribute it would become a submodule and enter the state dict.
        model.__dict__["_swinir_compiled"] = fn
    return fn


class _Runner:
    """Runs the model on tiles of one plan, with the precision fallback."""

    def __init__(self, model: SwinIR, device: torch.device, dtype: torch.dtype, compile: bool = False) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        self.forward = compiled(model) if compile else model
        self.warned = False

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward is self.model:
            return self.model(x)
        try:
            return self.forward(x)
        except Exception as e:  # inductor/dynamo failures: no compiler, an unsupported op, ...
            if is_out_of_memory(e):
                raise  # the tile loop shrinks the tile
            raise SwinIRError(
                f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); run without compile "
                "(--compile off)"
            ) from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            out = self._forward(x)
        if self.dtype != torch.float32 and not torch.isfinite(out).all():
            # SwinIR overflows fp16 on real weights (black or NaN output): redo this tile in fp32.
            if not self.warned:
                log.warning("%s produced non-finite values; those tiles were redone in fp32", self.dtype)
                self.warned = True
            with torch.inference_mode():
                out = self.model(x)
        return out.float().cpu()


def auto_tile(config, height: int, width: int, budget: int, dtype: torch.dtype, device_type: str = "cpu") -> int:
    """The tile side "auto" uses for a padded height x width input (window multiples): the whole image when its
    estimated peak fits `budget`, else the largest window-aligned tile that does.

    Smaller tiles are not faster on the CPU either (bench/bench_tiles.py, bench/RESULTS.md): with large buffers
    recycled (allocator.py), a forward pass costs about the same per pixel from 192² to 1024² for the S and M
    networks, so the fewest, largest tiles win, with the least overlap computed twice. The recycled heap holds more
    than the live activations, so on the CPU `restore` passes `memory.estimate_budget` (the budget over the heap's
    retention): a 1024² image then runs as 2x2 tiles, 6-8 % slower than whole but in a third of the memory."""
    if memory.estimate_bytes(config, height * width, dtype, device_type) <= budget:
        return max(height, width)
    side = int(memory.largest_tile_pixels(config, budget, dtype, device_type) ** 0.5)
    return max(align_down(side, config.window_size), MIN_TILE_WINDOWS * config.window_size)


def _resolve_tile(tile: int | str | None, cfg, height: int, width: int, budget: int, dtype: torch.dtype,
                  device_type: str = "cpu") -> int:
    w = cfg.window_size
    if tile not in (None, "auto", 0):
        if not isinstance(tile, int) or tile < 0:
            raise InputError(f"tile must be None, 'auto' or a positive size in pixels, got {tile!r}")
        return max(align_down(tile, w), MIN_TILE_WINDOWS * w)
    return auto_tile(cfg, height, width, budget, dtype, device_type)


@dataclass
class _Schedule:
    """Tile size and tiles per forward, kept across planes and images: once an out-of-memory error has shrunk the
    tile, the rest of the run does not try the failing size again."""

    tile: int
    tile_batch: int
    overlap: int
    planes_after: int = 0  # planes still to come after the current one, for the progress total


def _run_plane(
    runner: _Runner,
    plane: torch.Tensor,
    scale: int,
    window: int,
    schedule: _Schedule,
    counter: _Counter,
    cancel: Callable[[], bool] | None,
    oom_kinds: tuple[type[BaseException], ...],
    is_oom: Callable[[BaseException], bool],
) -> torch.Tensor:
    """One (1, C, H, W) plane through the model, tiled; shrinks the tile on OOM and resumes."""
    h, w = plane.shape[-2:]
    padded = pad_to_window(plane, window)
    ph, pw = padded.shape[-2:]
    acc = torch.zeros(1, plane.shape[1], ph * scale, pw * scale)
    weight = torch.zeros(1, 1, ph * scale, pw * scale)
    plan = plan_tiles(ph, pw, schedule.tile, schedule.overlap, window)
    counter.canvas = Canvas(acc, weight, h * scale, w * scale)
    while True:
        started = counter.done
        try:
            _accumulate(runner, padded, plan, scale, acc, weight, counter, cancel, schedule.tile_batch)
            break
        # oom_kinds holds RuntimeError, the base of every device OOM torch raises (OutOfMemoryError, AcceleratorError),
        # not Exception: an interrupt (ComfyUI's is an Exception in 0.3.75, a BaseException later) passes untouched.
        except oom_kinds as error:
            if not is_oom(error):
                raise
            used = max(plan.tile_height, plan.tile_width)
            smaller = max(align_down(used // 2, window), MIN_TILE_WINDOWS * window)
            if smaller >= used:
                raise SwinIRError(
                    f"out of memory even with {used}px tiles; free memory (close other programs or models), "
                    "use bf16 precision, or a smaller model"
                ) from None
            log.warning("out of memory with %dpx tiles; retrying the remaining tiles at %dpx", used, smaller)
            unfinished = len(plan) - (counter.done - started)
            old_count = len(plan)
            plan = plan_tiles(ph, pw, smaller, schedule.overlap, window)
            counter.total += len(plan) - unfinished + schedule.planes_after * (len(plan) - old_count)
            schedule.tile, schedule.tile_batch = smaller, 1
    # In place: at 2048² x2 every extra full-size temporary is another 200 MB.
    return acc.div_(weight.clamp_min_(1e-12))[..., : h * scale, : w * scale]


def _accumulate(runner, padded, plan: TilePlan, scale, acc, weight, counter: _Counter, cancel, tile_batch) -> None:
    tiles = plan.tiles
    if len(tiles) == 1:
        if cancel is not None and cancel():
            raise Cancelled("cancelled")
        acc += runner(padded)
        weight += 1
        counter.tick()
        return
    # Tiles whose whole footprint is already fully weighted (done before an OOM shrink) are not run again.
    todo = [t for t in tiles if not bool(
        (weight[..., t.y * scale : (t.y + t.height) * scale, t.x * scale : (t.x + t.width) * scale] >= 1 - 1e-6).all()
    )]
    for _ in range(len(tiles) - len(todo)):
        counter.tick()
    for start in range(0, len(todo), tile_batch):
        group = todo[start : start + tile_batch]
        if cancel is not None and cancel():
            raise Cancelled("cancelled")
        batch = torch.cat([padded[..., t.y : t.y + t.height, t.x : t.x + t.width] for t in group])
        out = runner(batch)
        for i, t in enumerate(group):
            wt = tile_weight(plan, t, scale)
            region = (..., slice(t.y * scale, (t.y + t.height) * scale), slice(t.x * scale, (t.x + t.width) * scale))
            acc[region] += out[i : i + 1] * wt
            weight[region] += wt
            counter.tick()


def restore(
    model: SwinIR,
    images: torch.Tensor,
    *,
    tile: int | str | None = None,
    overlap: int | None = None,
    precision: str = "fp32",
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    gray_mode: str = "luma",
    oom_exceptions: tuple[type[BaseException], ...] = (torch.OutOfMemoryError,),
    memory_budget: int | None = None,
    tile_batch: int | None = None,
    compile: bool = False,
    is_oom: Callable[[BaseException], bool] | None = None,
    preview: Callable[[Canvas], None] | None = None,
) -> torch.Tensor:
    """Restore NCHW float images in [0, 1]; returns NCHW float32 in [0, 1] on the CPU, `scale` times larger.

    tile: None or "auto" runs the whole image when it fits the memory budget, else the largest window-aligned
    tile that fits (see `auto_tile`); an int forces that tile size (input pixels). overlap: input pixels shared by neighbouring
    tiles (default 4 windows). progress(done, total) is called once per tile and may raise to abort; cancel() is
    checked before each tile and stops with `Cancelled`. Images are processed one at a time, so memory does not
    grow with the batch. compile: run the model through `torch.compile` (the first tile of each new size pays
    the compilation; see bench/RESULTS.md for when it pays off). Every out-of-memory error shrinks the tile: those of
    `oom_exceptions`, and those `is_oom(error)` recognises among RuntimeErrors (default `is_out_of_memory`: torch's
    OutOfMemoryError and AcceleratorError). preview(canvas) is called after each tile with the image as far as it
    is done (`Canvas`); it may raise to abort, like progress.
    """
    check_images(images, model.config.scale)
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if gray_mode not in GRAY_MODES:
        raise InputError(f"gray_mode must be one of {', '.join(GRAY_MODES)}, got {gray_mode!r}")
    cfg = model.config
    dtype = PRECISIONS[precision]
    home = next(model.parameters()).device
    device = resolve_device(device, home)
    warn_if_emulated(device, dtype)
    budget = memory_budget if memory_budget is not None else device_budget(device)
    window, scale = cfg.window_size, cfg.scale
    overlap = default_overlap(window) if overlap is None else max(0, int(overlap))
    n, c, h, w = images.shape
    plan_channels = channel_plan(c, cfg.in_chans, scale, gray_mode)
    ph, pw = -(-h // window) * window, -(-w // window) * window
    # Tiles are sized for what a pass really holds: on the CPU, its recycled heap (memory.heap_retention).
    budget = memory.estimate_budget(budget, device)
    tile_px = _resolve_tile(tile, cfg, ph, pw, budget, dtype, device.type)
    planes_per_image = len(plan_channels.to_model(images[:1]))
    per_plane = len(plan_tiles(ph, pw, tile_px, overlap, window))
    total = n * planes_per_image * per_plane
    if tile_batch is None:
        fits = max(1, budget // max(1, memory.estimate_bytes(cfg, tile_px * tile_px, dtype, device.type)))
        tile_batch = 1 if device.type == "cpu" else int(min(fits, 8))
    counter = _Counter(total, progress, preview)
    oom_kinds = (*oom_exceptions, RuntimeError)
    device_oom = is_oom or is_out_of_memory

    def oom(error: BaseException) -> bool:
        return isinstance(error, oom_exceptions) or device_oom(error)

    schedule = _Schedule(tile_px, tile_batch, overlap)
    runner = _Runner(model, device, dtype, compile)
    out = torch.empty(n, c, h * scale, w * scale) if n > 1 else None
    if device != home:
        model.to(device)
    # On the CPU, malloc keeps the large buffers between ops instead of mapping them afresh (see allocator.py).
    buffers = reuse_large_buffers() if device.type == "cpu" else nullcontext()
    try:
        with buffers:
            for i in range(n):
                image = images[i : i + 1].float().cpu()
                planes = []
                for k, plane in enumerate(plan_channels.to_model(image)):
                    schedule.planes_after = (n - i) * planes_per_image - k - 1
                    planes.append(_run_plane(runner, plane, scale, window, schedule, counter, cancel, oom_kinds,
                                             oom))
                result = plan_channels.from_model(image, planes).clamp_(0, 1)
                if out is None:
                    out = result if result.is_contiguous() else result.contiguous()
                else:
                    out[i : i + 1] = result
    finally:
        if device != home:
            model.to(home)
    return out

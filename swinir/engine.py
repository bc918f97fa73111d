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
from .network import SwinIR, pad_to_window
from .tiling import TilePlan, align_down, plan_tiles, tile_weight

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEFAULT_OVERLAP_WINDOWS = 4
MIN_TILE_WINDOWS = 4

Progress = Callable[[int, int], None]


class _Counter:
    """Tiles done and planned; the plan can grow when an out-of-memory error shrinks the tiles."""

    def __init__(self, total: int, callback: Progress | None) -> None:
        self.done, self.total, self.callback = 0, total, callback

    def tick(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)


def default_overlap(window: int) -> int:
    return DEFAULT_OVERLAP_WINDOWS * window


def check_images(images: torch.Tensor, scale: int = 1) -> None:
    """Refuse what the engine cannot restore before any work or large allocation; `scale` sizes the result."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.layout != torch.strided or images.is_meta:
        what = "meta" if images.is_meta else str(images.layout).removeprefix("torch.")
        raise InputError(
            f"images must be a dense tensor holding data, got a {what} tensor; convert it first (.to_dense())"
        )
    if images.dim() != 4:
        raise InputError(f"images must be NCHW (4 dimensions), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise InputError("the image batch is empty; connect at least one image")
    if h == 0 or w == 0:
        raise InputError(f"image size {w}x{h} has no pixels")
    if c not in (1, 2, 3, 4):
        raise InputError(
            f"images have {c} channels; expected 1 (gray), 3 (RGB) or with alpha 2/4 in NCHW layout "
            f"(got shape {tuple(images.shape)}; a channels-last NHWC tensor must be permuted first)"
        )
    if images.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise InputError(f"images must be float in [0, 1] (float16, bfloat16, float32 or float64), got {images.dtype}")
    # What cannot fit however it is tiled: the float32 result plus one image's accumulator and weights, on the CPU.
    # (A stride-0 view can claim a terabyte image without holding it.)
    needed = 4 * h * w * scale * scale * (n * c + c + 1)
    available = memory.available_ram()
    if needed > available:
        raise InputError(
            f"restoring {n} image(s) of {w}x{h} at x{scale} needs at least {needed / 2**30:.1f} GiB of memory for "
            f"the result, and {available / 2**30:.1f} GiB is available; downscale or split the image, or restore "
            "fewer images at once"
        )
    # In slices of at most 4M values: a whole-batch temporary (or the copy a reduction makes of a stride-0 view)
    # could need more memory than the images themselves.
    rows = max(1, (1 << 22) // (c * w))
    bad = sum(
        int((~torch.isfinite(images[i, :, top : top + rows])).sum()) for i in range(n) for top in range(0, h, rows)
    )
    if bad:
        raise InputError(f"images contain {bad} NaN or infinite values; fix the node or file that produced them")


def resolve_device(device: torch.device | str | None, default: torch.device) -> torch.device:
    """The device to run on; an unusable one is an InputError naming the fix, not a driver traceback."""
    if device is None:
        return default
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device} requested but CUDA is not available here; use cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"device {device} does not exist; this machine has {torch.cuda.device_count()} CUDA devices")
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise InputError(f"device {device} is not supported; use cpu or cuda")
    return device


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
    """Say once per process when the precision asked for has no hardware on this CPU (the default model ran 7x
    slower in bf16 than in fp32 on an AVX2 CPU: bench/bench_precision.py). Through logging, not `warnings`: in ComfyUI
    0.3.75's server the warnings of its worker thread never reached the console."""
    if device.type == "cpu" and dtype not in _EMULATED_SAID and not cpu_has_native(dtype):
        _EMULATED_SAID.add(dtype)
        name = next(k for k, v in PRECISIONS.items() if v == dtype)
        log.warning(
            "%s on this CPU is emulated (it has no AVX-512 %s or AMX units) and runs several times slower than fp32; "
            "choose fp32 precision", name, name.upper(),
        )


def _autocast(device: torch.device, dtype: torch.dtype):
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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
        except torch.OutOfMemoryError:
            raise
        except Exception as e:  # inductor/dynamo failures: no compiler, an unsupported op, ...
            raise SwinIRError(
                f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); run without compile "
                "(--compile off)"
            ) from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        with torch.inference_mode(), _autocast(self.device, self.dtype):
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

    Smaller tiles were not faster on the CPU either in the sweep that set this rule (bench/bench_tiles.py,
    bench/RESULTS.md): a forward pass cost the same per pixel from 192² to 1024² for the S and M networks once
    large buffers are recycled (allocator.py), so the fewest, largest tiles win, with the least overlap computed
    twice (one later VM ran 368² tiles faster per pixel at 1024²; recorded, not yet a rule). The 1.8x slowdown
    per pixel above about 350² that looked like the last-level cache was glibc mapping every large activation
    afresh. The recycled heap holds more than the live activations, so on the CPU `restore` passes
    `memory.estimate_budget` (the budget over the heap's retention): a 1024² image then runs as 2x2 tiles, 6-8 %
    slower than whole but in a third of the memory (bench/RESULTS.md)."""
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
    oom_exceptions: tuple[type[BaseException], ...],
) -> torch.Tensor:
    """One (1, C, H, W) plane through the model, tiled; shrinks the tile on OOM and resumes."""
    h, w = plane.shape[-2:]
    padded = pad_to_window(plane, window)
    ph, pw = padded.shape[-2:]
    acc = torch.zeros(1, plane.shape[1], ph * scale, pw * scale)
    weight = torch.zeros(1, 1, ph * scale, pw * scale)
    plan = plan_tiles(ph, pw, schedule.tile, schedule.overlap, window)
    while True:
        started = counter.done
        try:
            _accumulate(runner, padded, plan, scale, acc, weight, counter, cancel, schedule.tile_batch)
            break
        except oom_exceptions:
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
) -> torch.Tensor:
    """Restore NCHW float images in [0, 1]; returns NCHW float32 in [0, 1] on the CPU, `scale` times larger.

    tile: None or "auto" runs the whole image when it fits the memory budget, else the largest window-aligned
    tile that fits (see `auto_tile`); an int forces that tile size (input pixels). overlap: input pixels shared by neighbouring
    tiles (default 4 windows). progress(done, total) is called once per tile and may raise to abort; cancel() is
    checked before each tile and stops with `Cancelled`. Images are processed one at a time, so memory does not
    grow with the batch. compile: run the model through `torch.compile` (the first tile of each new size pays
    the compilation; see bench/RESULTS.md for when it pays off).
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
    budget = memory_budget if memory_budget is not None else memory.memory_budget(device)
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
    counter = _Counter(total, progress)
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
                    planes.append(_run_plane(runner, plane, scale, window, schedule, counter, cancel, oom_exceptions))
                result = plan_channels.from_model(image, planes).clamp_(0, 1)
                if out is None:
                    out = result if result.is_contiguous() else result.contiguous()
                else:
                    out[i : i + 1] = result
    finally:
        if device != home:
            model.to(home)
    return out

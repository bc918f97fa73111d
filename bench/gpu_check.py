"""The GPU check of issue 11: one command for the first GPU we are lent, finished in under 5 minutes.

    python -m bench.gpu_check --out bench/gpu_check.json [--markdown bench/gpu_check.md]
    python -m bench.gpu_check --device cpu --quick --threads 1 --out /tmp/gpu_check.json   # the CPU rehearsal

Sections (each in its own try/except, under one time budget; the JSON record is rewritten after every section, so
a run killed at its limit still leaves what it measured):

1. kernels: which SDPA backend and kernels every attention call runs (torch profiler: the backend op under each
   call, and the device kernels it launched), before (ALIGN = 1: unpadded head dims, unaligned masks) and after
   (ALIGN = 8) the padding, for fp32, bf16 and fp16, on SwinIR-M x4 (head dim 30), SwinIR-S x2 (10) and a
   window-7 colour JPEG model (30). On CUDA, torch's own `can_use_*_attention` checks say why a kernel is refused.
2. parity: engine outputs in fp32, bf16 and fp16 on the device against fp32 on the CPU (PSNR; whether the fp16
   guard, which redoes non-finite tiles in fp32, fired; whether the raw fp16 forward was finite).
3. timing: our network (and our engine end to end) against spandrel's SwinIR on the same random weights: M x4 at
   256², S x2 at 512², JPEG window 7 at 512², fp32 and bf16, interleaved after warm-up, synchronised, medians.
   batch: 8 frames with several tiles each, tile_batch 1 against 8 against whole frames, and spandrel per frame.
4. memory: peak memory of the engine by tile size (torch.cuda.max_memory_allocated, reset between runs; on the
   CPU the process's peak RSS, reset through /proc/self/clear_refs), against `swinir.memory`'s estimate.
5. oom: an out-of-memory error provoked on purpose (on CUDA a per-process memory fraction between what small
   tiles and the whole image need; on the CPU simulated through the engine's `oom_exceptions`) and recovered by
   shrinking the tile; the result must equal an unconstrained run at the tile it ended with.

Random weights everywhere (testkit/reference.py: every parameter random, outputs non-trivial). Needs
spandrel (`pip install spandrel==0.4.1`; on a machine without a registry carry its wheel).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]

import swinir  # noqa: E402
import swinir.network as network  # noqa: E402
from swinir import cache, memory  # noqa: E402
from swinir.budget import memory_budget  # noqa: E402
from swinir.engine import _resolve_tile, default_overlap  # noqa: E402
from swinir.precision import PRECISIONS, autocast  # noqa: E402
from swinir.fileutil import atomic_target  # noqa: E402
from swinir.tiling import plan_tiles  # noqa: E402

from bench.bench_network import CONFIGS  # noqa: E402
from bench.bench_seams import psnr as _psnr  # noqa: E402

SECTIONS = ("kernels", "parity", "timing", "batch", "memory", "oom")
# Shares of the time budget; a section gets its share of what is left, so time one leaves over goes to the rest.
SHARES = {"kernels": 5, "parity": 4, "timing": 8, "batch": 3, "memory": 3, "oom": 3}
ATTENTION_LABEL = "swinir.window_attention"
FUSED = ("efficient", "flash", "cudnn", "flash_cpu")

_M = CONFIGS["M"]
FULL_MODELS: dict[str, dict] = {
    "M_x4": dict(_M, upscale=4),
    "M_x2": dict(_M),
    "S_x2": dict(CONFIGS["S"]),
    "JPEG_w7": dict(_M, upscale=1, img_size=126, window_size=7, img_range=255.0, upsampler=""),
}
# Same head dims (30, 10, 30), windows and tails as the real models, two shallow stages.
QUICK_MODELS: dict[str, dict] = {
    "M_x4": dict(FULL_MODELS["M_x4"], embed_dim=60, depths=[2, 2], num_heads=[2, 2]),
    "M_x2": dict(FULL_MODELS["M_x2"], embed_dim=30, depths=[2, 2], num_heads=[1, 1]),  # batch, memory, oom
    "S_x2": dict(FULL_MODELS["S_x2"], embed_dim=20, depths=[2, 2], num_heads=[2, 2]),
    "JPEG_w7": dict(FULL_MODELS["JPEG_w7"], embed_dim=60, depths=[2], num_heads=[2]),
}
LABELS = {"M_x4": "SwinIR-M x4", "M_x2": "SwinIR-M x2", "S_x2": "SwinIR-S x2", "JPEG_w7": "SwinIR-M JPEG (window 7)"}


@dataclass(frozen=True)
class Sizes:
    """Input sides of every section, full or quick."""

    kernels: dict[str, int]
    parity: dict[str, int]
    timing: tuple[tuple[str, int], ...]
    batch: tuple[int, int, int, int]  # frames, side, tile, overlap
    memory: tuple[int, tuple[int, ...]]  # side, tiles (the last one >= side: the whole image)
    oom: tuple[int, int]  # side, small tile
    repeats: int
    warmup: int


FULL = Sizes(
    kernels={"M_x4": 64, "S_x2": 64, "JPEG_w7": 70},
    parity={"M_x4": 96, "S_x2": 192, "JPEG_w7": 126},
    timing=(("M_x4", 256), ("S_x2", 512), ("JPEG_w7", 512)),
    batch=(8, 256, 128, 32),
    memory=(1024, (128, 256, 512, 1024)),
    oom=(1024, 256),
    repeats=10,
    warmup=2,
)
QUICK = Sizes(
    kernels={"M_x4": 32, "S_x2": 32, "JPEG_w7": 28},
    parity={"M_x4": 36, "S_x2": 40, "JPEG_w7": 30},
    timing=(("M_x4", 32), ("S_x2", 48), ("JPEG_w7", 42)),
    batch=(8, 48, 32, 8),
    memory=(96, (32, 64, 96)),
    oom=(96, 32),
    repeats=2,
    warmup=1,
)


class SectionTimeout(Exception):
    """A section ran out of its share of the budget before a step it cannot do without (sections that loop over
    cases skip the remaining ones instead, see Context.expired)."""


class InjectedError(RuntimeError):
    """Raised by --inject-error, to prove that one failing section does not stop the others."""


class SimulatedOOM(Exception):
    """The CPU stand-in for torch.OutOfMemoryError (see section_oom)."""


def _reference():
    try:
        from testkit import reference
    except ImportError as e:
        raise SystemExit(
            f"gpu_check needs spandrel for its reference network and random weights ({e}); install it with "
            "`pip install spandrel==0.4.1`, or on a machine without a registry carry its wheel"
        ) from None
    return reference


# --------------------------------------------------------------------------------------------------------------
# Shared machinery: models, clocks, memory, the record.


class Models:
    """Our network and spandrel's on the same random weights, built once per key, both on the device."""

    def __init__(self, archs: dict[str, dict], device: torch.device) -> None:
        self.archs, self.device = archs, device
        self._built: dict[str, tuple[swinir.SwinIR, torch.nn.Module]] = {}

    def get(self, key: str) -> tuple[swinir.SwinIR, torch.nn.Module]:
        if key not in self._built:
            ref = _reference().build_reference(**self.archs[key], seed=SEEDS[key])
            ours = swinir.model_from_state_dict(ref.state_dict(), f"gpu-check-{key}")
            self._built[key] = (ours.to(self.device), ref.to(self.device))
        return self._built[key]

    def head_dim(self, key: str) -> int:
        arch = self.archs[key]
        return arch["embed_dim"] // arch["num_heads"][0]


SEEDS = {"M_x4": 11, "M_x2": 12, "S_x2": 13, "JPEG_w7": 14}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def elapsed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def forward(model: torch.nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    with torch.inference_mode(), autocast(x.device, PRECISIONS[precision]):
        return model(x)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """dB over [0, 1] images; None for identical images (infinite)."""
    value = _psnr(a.float().cpu(), b.float().cpu())
    return value if math.isfinite(value) else None


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def image(key: str, side: int, archs: dict[str, dict], seed: int, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, archs[key]["in_chans"], side, side, generator=g)


def output_stats(y: torch.Tensor) -> dict[str, float]:
    """Evidence that random weights give a real image: spread, and how much of it the clamp to [0, 1] flattened."""
    y = y.float()
    return {"mean": float(y.mean()), "std": float(y.std()), "clamped": float(((y <= 0) | (y >= 1)).float().mean())}


def whole_tile(side: int, window: int) -> int:
    """A tile size that makes the engine run the image (padded to a window multiple) as one tile."""
    return -(-side // window) * window


def _rss() -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * page


def _hwm() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def peak_growth(device: torch.device, fn: Callable[[], Any]) -> tuple[int | None, float, Any]:
    """(peak bytes above what was held before, seconds, fn's value). CUDA: the allocator's peak; CPU: the peak
    RSS after resetting it (None where /proc/self/clear_refs is unavailable)."""
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        value = fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base, time.perf_counter() - start, value
    try:
        base = _rss()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        base = None
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    return (None if base is None else max(0, _hwm() - base)), seconds, value


@contextmanager
def engine_warnings():
    """Collects the engine's log records (out-of-memory shrinks) and warnings (the fp16 guard)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("swinir.engine")
    handler, level = Keep(level=logging.WARNING), log.level
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield records, caught
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become None, tuples lists, everything else a string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return str(value)


@dataclass
class Context:
    args: argparse.Namespace
    device: torch.device
    sizes: Sizes
    models: Models
    deadline: float = 0.0  # of the running section

    def check_time(self, what: str) -> None:
        if time.monotonic() > self.deadline:
            raise SectionTimeout(f"time budget spent before {what}")

    def expired(self, what: str, result: dict) -> bool:
        """True (and `what` listed in result['skipped_for_time']) once the section's time is spent: loops skip
        their remaining cases but keep what they measured."""
        if time.monotonic() <= self.deadline:
            return False
        result.setdefault("skipped_for_time", []).append(what)
        return True

    def left(self) -> float:
        return self.deadline - time.monotonic()


def interleaved(ctx: Context, paths: dict[str, Callable[[], Any]], result: dict) -> dict[str, float]:
    """Warm-up, then rounds of every path in turn, synchronised; medians in seconds. A path that fails in its
    warm-up is dropped and its error kept in result['errors']; the loop stops early, with what it has, at the
    section's deadline."""
    errors = result.setdefault("errors", {})
    for name, fn in list(paths.items()):
        try:
            for _ in range(ctx.sizes.warmup):
                elapsed(fn, ctx.device)
        except Exception as e:  # noqa: BLE001 - a baseline variant that cannot run is recorded, not fatal
            errors[name] = f"{type(e).__name__}: {str(e)[:300]}"
            del paths[name]
    times: dict[str, list[float]] = {name: [] for name in paths}
    # Misses while timing mean the byte-bounded cache (padded weights, masks, layouts) is rebuilding per forward.
    before = cache.stats()
    for _ in range(ctx.args.repeats or ctx.sizes.repeats):
        if ctx.left() < 0 and all(len(t) >= 1 for t in times.values()):
            result["truncated"] = True
            break
        for name, fn in paths.items():
            times[name].append(elapsed(fn, ctx.device))
    result["samples"] = {name: len(t) for name, t in times.items()}
    after = cache.stats()
    result["cache_while_timing"] = {k: after[k] - before[k] for k in ("misses", "evictions")}
    return {name: statistics.median(t) for name, t in times.items() if t}


# --------------------------------------------------------------------------------------------------------------
# 1. Which SDPA kernel each attention call runs.

BACKEND_OPS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash_cpu",
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_flash_attention_forward": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_efficient_attention_forward": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_cudnn_attention_forward": "cudnn",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_attention_math_for_mps": "math",
}
KERNEL_PATTERNS = (  # cuDNN's SDPA kernels can have "flash" in their names, so they are matched first
    ("cudnn", re.compile(r"cudnn|fort_native_sdpa", re.I)),
    ("efficient", re.compile(r"fmha|efficient_attention|mem_eff|AttentionKernel|attention_kernel_batched", re.I)),
    ("flash", re.compile(r"flash", re.I)),
)
# Ops inside an attention call that move data (clone and a non-contiguous .contiguous() end in copy_): a kernel that
# pads the mask on every call shows up here, as pad or constant_pad_nd and its copy_.
COPY_OPS = ("aten::copy_", "aten::cat", "aten::pad", "aten::constant_pad_nd")


def kernel_backend(name: str) -> str | None:
    return next((backend for backend, pattern in KERNEL_PATTERNS if pattern.search(name)), None)


def _subtree(event) -> list:
    out, stack = [], [event]
    while stack:
        e = stack.pop()
        out.append(e)
        stack.extend(e.cpu_children)
    return out


def classify_call(event) -> dict:
    """Backend, device kernels and data-moving ops of one profiled attention call."""
    events = _subtree(event)
    ops = [e.name for e in events[1:]]
    kernels = [k.name for e in events for k in getattr(e, "kernels", [])]
    backend = next((BACKEND_OPS[op] for op in ops if op in BACKEND_OPS and BACKEND_OPS[op] != "math"), None)
    if backend is None:
        backend = next((b for b in map(kernel_backend, kernels) if b), None)
    if backend is None:
        if "aten::scaled_dot_product_attention" not in ops:
            backend = "plain"  # network.USE_SDPA off, or the CPU training path
        elif any(BACKEND_OPS.get(op) == "math" for op in ops) or any(
            re.search(r"softmax|bmm|matmul|gemm", op) for op in ops
        ):
            backend = "math"
        else:
            backend = "unknown"
    return {"backend": backend, "kernels": kernels, "copies": [op for op in ops if op in COPY_OPS]}


@contextmanager
def native_warnings(lines: list[str]):
    """Collects what torch's C++ code prints to stderr (TORCH_WARN there does not always become a Python warning),
    and Python warnings too, into `lines`."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += [str(w.message) for w in caught]
            lines += [line for line in sink.read().decode(errors="replace").splitlines() if line.strip()]


def _sdpa_reasons(q, k, v, mask) -> dict:
    """torch's own verdict on each fused CUDA kernel for these exact tensors, with its reasons for refusing."""
    cuda = torch.backends.cuda
    try:
        params = cuda.SDPAParams(q, k, v, mask, 0.0, False, False)
    except TypeError:  # older signature, without enable_gqa
        params = cuda.SDPAParams(q, k, v, mask, 0.0, False)
    out = {}
    for name in ("flash", "efficient", "cudnn"):
        check = getattr(cuda, f"can_use_{name}_attention", None)
        if check is None:
            continue
        why: list[str] = []
        try:
            with native_warnings(why):
                ok = bool(check(params, True))
        except Exception as e:  # noqa: BLE001 - a check that cannot run says so instead of stopping the case
            ok, why = None, why + [f"{type(e).__name__}: {str(e).splitlines()[0]}"]
        # "Warning: <reason> (function check_...)": keep the reason
        out[name] = {"ok": ok, "why": [re.sub(r"^\[W[^\]]*\]\s*(Warning:\s*)?", "", w)[:240] for w in why][:4]}
    return out


def _signature(q, mask) -> tuple:
    return (tuple(q.shape), tuple(q.stride()), str(q.dtype), tuple(mask.shape), tuple(mask.stride()),
            mask.data_ptr() % 16)


@contextmanager
def annotated_attention(signatures: dict | None):
    """Wraps network.window_attention (looked up per call by WindowAttention.forward) in a profiler range, so the
    backend op and kernels of each call can be read off the trace; collects call signatures while `signatures`
    is a dict. The check is about the SDPA path, so fp32 inference on the CPU (the quick CPU run) takes it too
    instead of its own `attend_cpu`."""
    original, fast_path = network.window_attention, network._cpu_fast_path

    def wrapper(q, k, v, mask, scale):
        if signatures is not None:
            key = _signature(q, mask)
            if key not in signatures:
                entry = {"q_shape": key[0], "q_stride": key[1], "dtype": key[2], "mask_shape": key[3],
                         "mask_stride": key[4], "mask_ptr_mod16": key[5], "calls": 0}
                try:  # on the CPU it only says that the fused CUDA kernels need CUDA tensors
                    entry["can_use"] = _sdpa_reasons(q, k, v, mask)
                except Exception as e:  # noqa: BLE001 - the introspection API moves between torch versions
                    entry["can_use"] = f"{type(e).__name__}: {e}"
                signatures[key] = entry
            signatures[key]["calls"] += 1
        with torch.profiler.record_function(ATTENTION_LABEL):
            return original(q, k, v, mask, scale)

    network.window_attention = wrapper
    network._cpu_fast_path = lambda x: False
    try:
        yield
    finally:
        network.window_attention, network._cpu_fast_path = original, fast_path


@contextmanager
def aligned_to(device_type: str, align: int):
    """network.ALIGN for `device_type` set to `align` (1: the unpadded "before" state), restored afterwards."""
    saved = dict(network.ALIGN)
    network.ALIGN[device_type] = align
    try:
        yield
    finally:
        network.ALIGN.clear()
        network.ALIGN.update(saved)


def profile_case(ctx: Context, key: str, precision: str, align: int) -> dict:
    model, _ = ctx.models.get(key)
    side = ctx.sizes.kernels[key]
    # Two tiles per forward: the batched path (masks broadcast over tiles by strides) is what tile_batch runs.
    x = image(key, side, ctx.models.archs, seed=1, batch=2).to(ctx.device)
    hd = ctx.models.head_dim(key)
    signatures: dict = {}
    activities = [torch.profiler.ProfilerActivity.CPU]
    if ctx.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with aligned_to(ctx.device.type, align):
        with annotated_attention(signatures):
            forward(model, x, precision)  # warm-up: caches (padded weights, aligned masks), kernel selection
        sync(ctx.device)
        with annotated_attention(None), torch.profiler.profile(activities=activities) as prof:
            forward(model, x, precision)
            sync(ctx.device)
    events = prof.events()
    calls = [classify_call(e) for e in events
             if e.name == ATTENTION_LABEL and e.device_type == torch.autograd.DeviceType.CPU]
    backends = Counter(c["backend"] for c in calls)
    kernels = Counter(k for c in calls for k in c["kernels"])
    fused = sum(n for b, n in backends.items() if b in FUSED)
    # Cross-check on the whole trace: fused-attention kernels launched against attention calls made (device-side
    # events where the trace lists them, else the kernels the profiler attached to the ops that launched them).
    trace_kernels = Counter(e.name for e in events if e.device_type != torch.autograd.DeviceType.CPU)
    if not trace_kernels:
        trace_kernels = Counter(k.name for e in events for k in getattr(e, "kernels", []))
    return {
        "model": key, "head_dim": hd, "padded_head_dim": -(-hd // align) * align, "precision": precision,
        "align": align, "input": [2, side, side], "calls": len(calls), "backends": dict(backends),
        "fused_calls": fused, "all_fused": bool(calls) and fused == len(calls),
        "copies_per_call": round(sum(len(c["copies"]) for c in calls) / max(1, len(calls)), 2),
        "copy_ops": dict(Counter(op for c in calls for op in c["copies"])),
        "kernels": {k[:160]: n for k, n in kernels.most_common(8)},
        "trace_kernel_launches": sum(trace_kernels.values()),
        "trace_fused_kernel_launches": sum(n for k, n in trace_kernels.items() if kernel_backend(k)),
        "signatures": list(signatures.values())[:6],
    }


def section_kernels(ctx: Context) -> dict:
    cases: list[dict] = []
    out: dict[str, Any] = {"cases": cases}
    for key in ("M_x4", "S_x2", "JPEG_w7"):
        for precision in PRECISIONS:
            for align in (1, 8):
                if ctx.expired(f"{key} {precision} align {align}", out):
                    continue
                try:
                    cases.append(profile_case(ctx, key, precision, align))
                except Exception as e:  # noqa: BLE001 - one case failing must not hide the others
                    cases.append({"model": key, "precision": precision, "align": align,
                                  "error": f"{type(e).__name__}: {str(e)[:400]}"})
    after = [c for c in cases if c.get("align") == 8]
    out.update(after_all_fused=bool(after) and all(c.get("all_fused") for c in after) and
               "skipped_for_time" not in out,
               before_fused_share=_share(c for c in cases if c.get("align") == 1), after_fused_share=_share(after))
    return out


def _share(cases) -> float | None:
    cases = [c for c in cases if "calls" in c]
    calls = sum(c["calls"] for c in cases)
    return None if not calls else sum(c["fused_calls"] for c in cases) / calls


# --------------------------------------------------------------------------------------------------------------
# 2. Outputs against fp32 on the CPU.


def section_parity(ctx: Context) -> dict:
    rows: list[dict] = []
    out: dict[str, Any] = {"rows": rows, "tf32": _tf32(), "reference_device": "cpu"}
    for key, side in ctx.sizes.parity.items():
        if ctx.expired(key, out):
            continue
        model, _ = ctx.models.get(key)
        window = model.config.window_size
        x = image(key, side, ctx.models.archs, seed=2)
        tile = whole_tile(side, window)  # one tile on both sides: only the arithmetic differs
        reference = swinir.restore(model, x, tile=tile, precision="fp32", device="cpu")
        row = {"model": key, "head_dim": ctx.models.head_dim(key), "input": [side, side],
               "reference": output_stats(reference), "precisions": {}}
        for precision in PRECISIONS:
            entry: dict[str, Any] = {}
            try:
                with engine_warnings() as (_, caught):
                    y = swinir.restore(model, x, tile=tile, precision=precision, device=ctx.device)
                entry["psnr_db"] = psnr(y, reference)
                entry["max_abs_diff"] = max_abs(y, reference)
                entry["identical"] = entry["max_abs_diff"] == 0
                entry["guard_fired"] = any("non-finite" in str(w.message) for w in caught)
                if precision != "fp32":
                    raw = forward(model, x.to(ctx.device), precision)  # what the guard saw before redoing tiles
                    entry["raw_forward_finite"] = bool(torch.isfinite(raw).all())
            except Exception as e:  # noqa: BLE001
                entry["error"] = f"{type(e).__name__}: {str(e)[:400]}"
            row["precisions"][precision] = entry
        rows.append(row)
    return out


def _tf32() -> dict:
    return {"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


# --------------------------------------------------------------------------------------------------------------
# 3. Time against spandrel.


def timing_case(ctx: Context, key: str, side: int, precision: str) -> dict:
    model, ref = ctx.models.get(key)
    x_cpu = image(key, side, ctx.models.archs, seed=3)
    x = x_cpu.to(ctx.device)
    tile = whole_tile(side, model.config.window_size)
    result: dict[str, Any] = {"model": key, "input": [side, side], "precision": precision}
    paths: dict[str, Callable[[], Any]] = {
        "ours": lambda: forward(model, x, precision),
        "ours_restore": lambda: swinir.restore(model, x_cpu, tile=tile, precision=precision, device=ctx.device),
        "spandrel": lambda: forward(ref, x, precision),
    }
    if precision != "fp32":
        # spandrel declares bfloat16 support (ComfyUI may cast the weights): time that too, the faster one counts.
        # (The copy is freed with this function's locals.)
        ref_cast = copy.deepcopy(ref).to(PRECISIONS[precision])
        x_cast = x.to(PRECISIONS[precision])

        def cast_forward():
            with torch.inference_mode():
                return ref_cast(x_cast)

        paths["spandrel_cast_weights"] = cast_forward
    result["max_abs_diff_vs_spandrel"] = max_abs(forward(model, x, precision), forward(ref, x, precision))
    medians = interleaved(ctx, paths, result)
    result["median_s"] = medians
    baselines = [medians[n] for n in ("spandrel", "spandrel_cast_weights") if n in medians]
    if baselines and "ours" in medians:
        best = min(baselines)
        result["spandrel_best_s"] = best
        result["speedup"] = best / medians["ours"]
        if "ours_restore" in medians:
            result["speedup_restore"] = best / medians["ours_restore"]
    return result


def section_timing(ctx: Context) -> dict:
    cases: list[dict] = []
    out: dict[str, Any] = {"cases": cases, "tf32": _tf32()}
    for key, side in ctx.sizes.timing:
        for precision in ("fp32", "bf16"):
            if ctx.expired(f"{key} {precision}", out):
                continue
            try:
                cases.append(timing_case(ctx, key, side, precision))
            except Exception as e:  # noqa: BLE001
                cases.append({"model": key, "input": [side, side], "precision": precision,
                              "error": f"{type(e).__name__}: {str(e)[:400]}"})
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
    return out


def section_batch(ctx: Context) -> dict:
    frames, side, tile, overlap = ctx.sizes.batch
    key = "M_x2"
    model, ref = ctx.models.get(key)
    window = model.config.window_size
    x = image(key, side, ctx.models.archs, seed=4, batch=frames)
    plan = plan_tiles(whole_tile(side, window), whole_tile(side, window), tile, overlap, window)
    cases: list[dict] = []
    out: dict[str, Any] = {"cases": cases}
    for precision in ("fp32", "bf16"):
        if ctx.expired(precision, out):
            continue
        result: dict[str, Any] = {"model": key, "frames": frames, "input": [side, side], "tile": tile,
                                  "overlap": overlap, "tiles_per_frame": len(plan), "precision": precision}
        outputs: dict[str, torch.Tensor] = {}

        def run(name: str, **kw) -> Callable[[], Any]:
            def go():
                outputs[name] = swinir.restore(model, x, precision=precision, device=ctx.device, **kw)
            return go

        def spandrel_frames():
            x_dev = x.to(ctx.device)
            return [forward(ref, x_dev[i : i + 1], precision) for i in range(frames)]

        paths = {
            "tile_batch_1": run("tile_batch_1", tile=tile, overlap=overlap, tile_batch=1),
            "tile_batch_8": run("tile_batch_8", tile=tile, overlap=overlap, tile_batch=8),
            "whole_frames": run("whole_frames", tile=whole_tile(side, window)),
            "spandrel_per_frame": spandrel_frames,
        }
        result["median_s"] = interleaved(ctx, paths, result)
        if "tile_batch_1" in outputs and "tile_batch_8" in outputs:
            result["max_abs_diff_tile_batch_8_vs_1"] = max_abs(outputs["tile_batch_1"], outputs["tile_batch_8"])
        m = result["median_s"]
        if "tile_batch_1" in m and "tile_batch_8" in m:
            result["speedup_tile_batch_8_vs_1"] = m["tile_batch_1"] / m["tile_batch_8"]
        if "spandrel_per_frame" in m and "whole_frames" in m:
            result["speedup_whole_vs_spandrel"] = m["spandrel_per_frame"] / m["whole_frames"]
        cases.append(result)
    return out


# --------------------------------------------------------------------------------------------------------------
# 4. Peak memory by tile size.


def section_memory(ctx: Context) -> dict:
    side, tiles = ctx.sizes.memory
    key = "M_x2"
    model, _ = ctx.models.get(key)
    cfg, window = model.config, model.config.window_size
    padded = whole_tile(side, window)
    x = image(key, side, ctx.models.archs, seed=5)
    rows: list[dict] = []
    budget = memory_budget(ctx.device)
    out: dict[str, Any] = {"model": key, "input": [side, side], "rows": rows, "budget_bytes": budget,
                           "measure": "torch.cuda.max_memory_allocated" if ctx.device.type == "cuda"
                           else "peak RSS (VmHWM)"}
    for precision in ("fp32", "bf16"):
        dtype = PRECISIONS[precision]
        for tile in (*tiles, "auto"):
            if ctx.expired(f"{precision} {tile}", out):
                continue
            if ctx.device.type == "cuda":
                torch.cuda.empty_cache()
            seen: list[int] = []
            kw = {"tile": None} if tile == "auto" else {"tile": tile, "tile_batch": 1}
            peak, seconds, _ = peak_growth(ctx.device, lambda: swinir.restore(
                model, x, precision=precision, device=ctx.device, progress=lambda d, n: seen.append(n), **kw))
            size = _resolve_tile(None if tile == "auto" else tile, cfg, padded, padded, budget, dtype,
                                 ctx.device.type)
            plan = plan_tiles(padded, padded, size, default_overlap(window), window)
            tile_pixels = plan.tile_height * plan.tile_width
            estimate = memory.estimate_bytes(cfg, tile_pixels, dtype, ctx.device.type)
            rows.append({"precision": precision, "tile": tile, "tile_px": [plan.tile_height, plan.tile_width],
                         "tiles": seen[-1] if seen else None, "peak_bytes": peak, "estimate_bytes": estimate,
                         "peak_over_estimate": None if peak is None else peak / estimate, "seconds": seconds})
    return out


# --------------------------------------------------------------------------------------------------------------
# 5. An out-of-memory error on purpose, recovered by shrinking.


def section_oom(ctx: Context) -> dict:
    side, small = ctx.sizes.oom
    key = "M_x2"
    model, _ = ctx.models.get(key)
    window = model.config.window_size
    x = image(key, side, ctx.models.archs, seed=6)
    whole = whole_tile(side, window)
    peak_whole, _, reference = peak_growth(
        ctx.device, lambda: swinir.restore(model, x, tile=whole, tile_batch=1, device=ctx.device))
    ctx.check_time("the constrained run")
    result: dict[str, Any] = {"model": key, "input": [side, side], "peak_whole_bytes": peak_whole}
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
        peak_small, _, _ = peak_growth(
            ctx.device, lambda: swinir.restore(model, x, tile=small, tile_batch=1, device=ctx.device))
        # Between what small tiles and the whole image need, so the engine's first (whole-image) try fails.
        allowed = int(math.sqrt(peak_small * peak_whole))
        torch.cuda.empty_cache()
        held = torch.cuda.memory_reserved(ctx.device)
        total = torch.cuda.get_device_properties(ctx.device).total_memory
        fraction = (held + allowed) / total
        result.update(mode="real: torch.cuda.set_per_process_memory_fraction", peak_small_bytes=peak_small,
                      allowed_growth_bytes=allowed, fraction=fraction)
        before = torch.cuda.memory_allocated(ctx.device)
        torch.cuda.set_per_process_memory_fraction(fraction, ctx.device)
        try:
            with engine_warnings() as (records, _):
                start = time.perf_counter()
                # The engine's own budget (free memory) says the whole image fits; the fraction says it does not.
                out = swinir.restore(model, x, device=ctx.device)
                result["seconds"] = time.perf_counter() - start
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, ctx.device)
        torch.cuda.empty_cache()
        result["leaked_bytes"] = torch.cuda.memory_allocated(ctx.device) - before
        tolerance = 1e-4  # same tiles, same kernels; cuDNN may pick other convolution algorithms under pressure
    else:
        limit = int(math.sqrt(small * small * whole * whole))  # input pixels per forward the "device" can hold

        def refuse_large(_module, inputs):
            t = inputs[0]
            if t.shape[0] * t.shape[-2] * t.shape[-1] > limit:
                raise SimulatedOOM(f"simulated: {tuple(t.shape)} exceeds {limit} pixels")

        result.update(mode="simulated: oom_exceptions + a forward pre-hook refusing large inputs", limit_pixels=limit)
        hook = model.register_forward_pre_hook(refuse_large)
        try:
            with engine_warnings() as (records, _):
                start = time.perf_counter()
                out = swinir.restore(model, x, device=ctx.device, memory_budget=1 << 40,
                                     oom_exceptions=(torch.OutOfMemoryError, SimulatedOOM))
                result["seconds"] = time.perf_counter() - start
        finally:
            hook.remove()
        tolerance = 1e-5
    shrinks = [list(r.args) for r in records if "out of memory" in r.getMessage()]
    result["shrinks"] = shrinks  # [[from px, to px], ...]
    final = shrinks[-1][1] if shrinks else whole
    result["final_tile"] = final
    ctx.check_time("the unconstrained run at the final tile")
    same_tile = swinir.restore(model, x, tile=final, tile_batch=1, device=ctx.device)
    result["max_abs_diff_vs_unconstrained_same_tile"] = max_abs(out, same_tile)
    result["psnr_vs_whole_db"] = psnr(out, reference)
    result["tolerance"] = tolerance
    result["recovered"] = bool(shrinks) and result["max_abs_diff_vs_unconstrained_same_tile"] <= tolerance
    return result


# --------------------------------------------------------------------------------------------------------------
# The run: budget, record, summary.

RUNNERS: dict[str, Callable[[Context], dict]] = {
    "kernels": section_kernels, "parity": section_parity, "timing": section_timing,
    "batch": section_batch, "memory": section_memory, "oom": section_oom,
}


def meta(args: argparse.Namespace, device: torch.device) -> dict:
    info: dict[str, Any] = {
        "quick": args.quick, "device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(), "argv": sys.argv[1:], "budget_s": args.budget_s,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "use_sdpa": network.USE_SDPA, "align": dict(network.ALIGN),
    }
    try:
        import spandrel

        info["spandrel"] = spandrel.__version__
    except ImportError:
        info["spandrel"] = None
    try:
        info["git"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, capability=list(torch.cuda.get_device_capability(device)),
                    gpu_memory_bytes=props.total_memory, cudnn=torch.backends.cudnn.version(), tf32=_tf32())
    else:
        info["gpu"] = None
    return info


def targets(record: dict) -> dict:
    """The issue's targets, read off the record (None where the section did not produce the figure)."""
    s = record["sections"]
    out: dict[str, dict] = {}
    kernels = s.get("kernels", {}).get("result")
    out["fused_kernel_every_call_after_padding"] = {
        "goal": "every attention call after padding runs a fused kernel",
        "value": None if not kernels else kernels["after_fused_share"],
        "met": None if not kernels else kernels["after_all_fused"],
    }
    parity = s.get("parity", {}).get("result")
    bf16 = [r["precisions"]["bf16"].get("psnr_db") for r in parity["rows"]] if parity else []
    low = min((v for v in bf16 if v is not None), default=None)
    out["bf16_psnr_vs_fp32_cpu"] = {"goal": ">= 45 dB", "value": low, "met": None if low is None else low >= 45}
    timing = s.get("timing", {}).get("result")
    for precision in ("fp32", "bf16"):
        case = next((c for c in (timing or {}).get("cases", [])
                     if c["model"] == "M_x4" and c["precision"] == precision and "speedup" in c), None)
        value = None if case is None else case["speedup"]
        out[f"speedup_vs_spandrel_M_x4_{precision}"] = {
            "goal": ">= 2x", "value": value, "met": None if value is None else value >= 2}
    oom = s.get("oom", {}).get("result")
    out["oom_recovered_by_shrinking"] = {"goal": "recovered, equal to an unconstrained run",
                                         "value": None if not oom else oom["shrinks"],
                                         "met": None if not oom else oom["recovered"]}
    return out


def write_record(record: dict, path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(clean(record), indent=1, allow_nan=False))


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: CUDA is not available here; use --device cpu (with --quick)")
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    sizes = QUICK if args.quick else FULL
    models = Models(QUICK_MODELS if args.quick else FULL_MODELS, device)
    ctx = Context(args, device, sizes, models)
    record: dict[str, Any] = {"meta": meta(args, device), "sections": {}}
    start = time.monotonic()
    end = start + args.budget_s
    todo = [s for s in SECTIONS if s in args.sections]
    for i, name in enumerate(todo):
        now = time.monotonic()
        rest = sum(SHARES[s] for s in todo[i:])
        ctx.deadline = now + max(0.0, end - now) * SHARES[name] / rest
        entry: dict[str, Any] = {"status": "ok"}
        print(f"[gpu_check] {name} ({max(0.0, ctx.deadline - now):.0f} s)", file=sys.stderr, flush=True)
        section_start = time.perf_counter()
        if now >= end:
            entry = {"status": "skipped", "reason": "time budget spent"}
        else:
            try:
                if name == args.inject_error:
                    raise InjectedError(f"--inject-error {name}")
                entry["result"] = RUNNERS[name](ctx)
            except SectionTimeout as e:
                entry = {"status": "timeout", "error": str(e)}
            except Exception as e:  # noqa: BLE001 - the record keeps the error and the next section runs
                entry = {"status": "error", "error": f"{type(e).__name__}: {e}",
                         "traceback": traceback.format_exc()[-4000:]}
            finally:
                swinir.clear_caches()
                if device.type == "cuda":
                    torch.cuda.set_per_process_memory_fraction(1.0, device)
                    torch.cuda.empty_cache()
        entry["seconds"] = time.perf_counter() - section_start
        record["sections"][name] = entry
        record["meta"]["elapsed_s"] = time.monotonic() - start
        try:
            record["targets"] = targets(record)
        except Exception as e:  # noqa: BLE001 - a summary bug must not lose the measurements
            record["targets"] = {"error": {"goal": "", "value": f"{type(e).__name__}: {e}", "met": None}}
        write_record(record, args.out)
        print(f"[gpu_check] {name}: {entry['status']} in {entry['seconds']:.1f} s", file=sys.stderr, flush=True)
    return record


# --------------------------------------------------------------------------------------------------------------
# The Markdown summary (for bench/RESULTS.md).


def _f(value, fmt: str = "{:.2f}", none: str = "–") -> str:
    return none if value is None else fmt.format(value)


def _ms(seconds) -> str:
    return _f(None if seconds is None else seconds * 1000, "{:.1f}")


def _mib(value) -> str:
    return _f(None if value is None else value / 2**20, "{:.0f}")


def markdown(record: dict) -> str:
    m, s = record["meta"], record["sections"]
    where = m.get("gpu") or f"CPU ({m['cpu_count']} cores, {m['threads']} threads)"
    lines = [f"## GPU check (`bench/gpu_check.py`{' --quick' if m['quick'] else ''}): {where}", "",
             f"torch {m['torch']} (CUDA {m['cuda']}), spandrel {m.get('spandrel')}, commit {m.get('git')}, "
             f"{m['started']}, {m.get('elapsed_s', 0):.0f} s of a {m['budget_s']:.0f} s budget. "
             "Random weights (every parameter random, testkit/reference.py).", ""]
    for name in SECTIONS:
        entry = s.get(name)
        if entry is None:
            continue
        if entry["status"] != "ok":
            lines += [f"**{name}: {entry['status']}**: {entry.get('error') or entry.get('reason')}", ""]
            continue
        lines += SUMMARIES[name](entry["result"])
        skipped = entry["result"].get("skipped_for_time")
        lines += ([f"*Time budget spent: skipped {', '.join(map(str, skipped))}.*"] if skipped else []) + [""]
    lines += ["### Targets (issue 11)", "", "| target | goal | value | met |", "|---|---|---|---|"]
    for name, t in record.get("targets", {}).items():
        value = t["value"]
        shown = _f(value) if isinstance(value, float) else ("–" if value is None else str(value))
        met = "–" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {name} | {t['goal']} | {shown} | {met} |")
    return "\n".join(lines) + "\n"


def _table(title: str, columns: list[str]) -> list[str]:
    return [title, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _md_kernels(r: dict) -> list[str]:
    lines = _table("### 1. SDPA backend per attention call (torch profiler)", [
        "model", "head dim", "precision", "before: align 1", "after: align 8 (padded head dim)",
        "copies/call after", "kernel after"])
    by = {(c["model"], c["precision"], c["align"]): c for c in r["cases"]}

    def cell(c):
        if c is None:
            return "–"
        if "error" in c:
            return f"error: {c['error'][:60]}"
        used = ", ".join(f"{b} {n}" for b, n in sorted(c["backends"].items()))
        return f"{used} of {c['calls']}" + (" ✓" if c["all_fused"] else "")

    for key in ("M_x4", "S_x2", "JPEG_w7"):
        for precision in PRECISIONS:
            before, after = by.get((key, precision, 1)), by.get((key, precision, 8))
            hd = (after or before or {}).get("head_dim", "")
            padded = (after or {}).get("padded_head_dim", "")
            kernel = next(iter((after or {}).get("kernels", {})), "–")[:70]
            lines.append(f"| {LABELS[key]} | {hd} | {precision} | {cell(before)} | {cell(after)} ({padded}) | "
                         f"{(after or {}).get('copies_per_call', '–')} | `{kernel}` |")
    return lines


def _md_parity(r: dict) -> list[str]:
    lines = _table("### 2. Outputs against fp32 on the CPU (PSNR dB, engine, one tile)", [
        "model", "input", "fp32", "bf16", "fp16", "fp16 guard fired", "raw fp16 finite", "output std / clamped"])
    for row in r["rows"]:
        p = row["precisions"]

        def db(name):
            e = p.get(name, {})
            if "error" in e:
                return "error"
            return "identical" if e.get("identical") else _f(e.get("psnr_db"), "{:.1f}")

        fp16 = p.get("fp16", {})
        ref = row["reference"]
        lines.append(f"| {LABELS[row['model']]} | {row['input'][0]}² | {db('fp32')} | {db('bf16')} | {db('fp16')} | "
                     f"{fp16.get('guard_fired', '–')} | {fp16.get('raw_forward_finite', '–')} | "
                     f"{ref['std']:.3f} / {ref['clamped']:.1%} |")
    tf = r["tf32"]
    lines += ["", f"TF32: matmul {tf['matmul_allow_tf32']}, cuDNN {tf['cudnn_allow_tf32']} (fp32 convolutions on "
              "CUDA use TF32 by default, which bounds the fp32 figure)."]
    return lines


def _md_timing(r: dict) -> list[str]:
    lines = _table("### 3. Time against spandrel (same weights, interleaved, medians, ms)", [
        "model", "input", "precision", "ours forward", "ours engine", "spandrel", "spandrel cast weights",
        "speed-up (engine)", "max abs diff"])
    for c in r["cases"]:
        if "error" in c:
            lines.append(f"| {LABELS[c['model']]} | {c['input'][0]}² | {c['precision']} | error: {c['error'][:80]} "
                         "| – | – | – | – | – |")
            continue
        m = c["median_s"]
        cast = _ms(m.get("spandrel_cast_weights")) if c["precision"] != "fp32" else "–"
        if c["precision"] != "fp32" and "spandrel_cast_weights" in c.get("errors", {}):
            cast = "fails"
        lines.append(f"| {LABELS[c['model']]} | {c['input'][0]}² | {c['precision']} | {_ms(m.get('ours'))} | "
                     f"{_ms(m.get('ours_restore'))} | {_ms(m.get('spandrel'))} | {cast} | "
                     f"**{_f(c.get('speedup'))}×** ({_f(c.get('speedup_restore'))}×) | "
                     f"{_f(c.get('max_abs_diff_vs_spandrel'), '{:.1e}')} |")
    thrash = [f"{LABELS[c['model']]} {c['precision']} ({c['cache_while_timing']['evictions']} evictions)"
              for c in r["cases"] if c.get("cache_while_timing", {}).get("evictions")]
    if thrash:
        lines += ["", f"Cache evictions while timing (rebuilt per forward): {', '.join(thrash)}."]
    return lines


def _md_batch(r: dict) -> list[str]:
    lines = _table("### 3b. Batch of frames, several tiles per forward (ms)", [
        "precision", "frames × input", "tiles/frame", "tile_batch 1", "tile_batch 8", "whole frames",
        "spandrel per frame", "tb 8 vs 1", "diff tb 8 vs 1"])
    for c in r["cases"]:
        m = c["median_s"]
        lines.append(f"| {c['precision']} | {c['frames']} × {c['input'][0]}² (tile {c['tile']}) | "
                     f"{c['tiles_per_frame']} | "
                     f"{_ms(m.get('tile_batch_1'))} | {_ms(m.get('tile_batch_8'))} | {_ms(m.get('whole_frames'))} | "
                     f"{_ms(m.get('spandrel_per_frame'))} | {_f(c.get('speedup_tile_batch_8_vs_1'))}× | "
                     f"{_f(c.get('max_abs_diff_tile_batch_8_vs_1'), '{:.1e}')} |")
    return lines


def _md_memory(r: dict) -> list[str]:
    lines = _table(f"### 4. Peak memory by tile size ({LABELS[r['model']]}, {r['input'][0]}², {r['measure']}, MiB)",
                   ["precision", "tile", "tile px", "tiles", "peak", "estimate", "peak / estimate", "s"])
    for row in r["rows"]:
        lines.append(f"| {row['precision']} | {row['tile']} | {row['tile_px'][0]}×{row['tile_px'][1]} | "
                     f"{row['tiles']} | "
                     f"{_mib(row['peak_bytes'])} | {_mib(row['estimate_bytes'])} | {_f(row['peak_over_estimate'])} | "
                     f"{row['seconds']:.2f} |")
    return lines


def _md_oom(r: dict) -> list[str]:
    return ["### 5. Out of memory on purpose", "",
            f"{LABELS[r['model']]}, {r['input'][0]}², {r['mode']}: shrinks {r['shrinks']} (px), final tile "
            f"{r['final_tile']}; max abs diff against an unconstrained run at that tile "
            f"{r['max_abs_diff_vs_unconstrained_same_tile']:.1e} (tolerance {r['tolerance']:.0e}); PSNR against the "
            f"whole image {_f(r['psnr_vs_whole_db'], '{:.1f}')} dB; recovered: **{r['recovered']}**"
            + (f"; memory left allocated {r['leaked_bytes']} B" if "leaked_bytes" in r else "") + "."]


SUMMARIES = {"kernels": _md_kernels, "parity": _md_parity, "timing": _md_timing, "batch": _md_batch,
             "memory": _md_memory, "oom": _md_oom}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="JSON record (rewritten after every section)")
    ap.add_argument("--markdown", type=Path, help="also write the Markdown summary here")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="tiny models and sizes (the CPU rehearsal)")
    ap.add_argument("--budget-s", type=float, default=None, help="time budget (default 270 s, quick 120 s)")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--repeats", type=int, default=0, help="timing rounds (default 10, quick 2)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")
    ap.add_argument("--inject-error", choices=SECTIONS, help=argparse.SUPPRESS)  # for the tests
    args = ap.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 120.0 if args.quick else 270.0
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        _reference()  # fail now, with the fix, rather than in every section
        record = run(args)
    except SystemExit as e:  # a missing package or device: one line, and a record that says so
        print(f"gpu_check: {e}", file=sys.stderr)
        write_record({"meta": {"argv": sys.argv[1:], "quick": args.quick, "device": args.device},
                      "fatal": str(e), "sections": {}}, args.out)
        return 2
    summary = markdown(record)
    print(summary)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        with atomic_target(args.markdown) as tmp:
            tmp.write_text(summary)
    return 1 if any(e["status"] == "error" for e in record["sections"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())

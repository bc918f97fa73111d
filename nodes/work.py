"""The work behind the ComfyUI nodes, free of ComfyUI imports.

Everything ComfyUI-specific (device choice, progress bar, interrupt, out-of-memory type, model
folders) is passed in by ``nodes/runtime.py``; this module only needs torch and the ``swinir`` core,
so it can be tested without a ComfyUI install.

ComfyUI images are BHWC float tensors in [0, 1]; the engine works on NCHW.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F

from .. import swinir
from ..swinir.describe import NODE_FOR_FAMILY, task_phrase
from ..swinir.precision import PRECISIONS as ENGINE_PRECISIONS
from ..swinir.engine import Canvas
from ..swinir.tasks import FAMILY_TITLES, TASKS
from ..swinir.tasks import task_family as family_of_task

PRECISIONS = tuple(ENGINE_PRECISIONS)


class WrongModelError(ValueError):
    """A SwinIR model was given to the node of another task."""


def task_family(config) -> str:
    if config.task not in TASKS:
        raise WrongModelError(f"Unknown SwinIR task {config.task!r}")
    return family_of_task(config.task)


def check_task(model, family: str) -> None:
    """Raise WrongModelError naming the model's task and the node to use, if it is not of ``family``."""
    config = model.config
    actual = task_family(config)
    if actual != family:
        raise WrongModelError(
            f"This is a {task_phrase(config)} [task {config.task}]; "
            f"'{NODE_FOR_FAMILY[family]}' needs a {FAMILY_TITLES[family]} model. "
            f"Use the '{NODE_FOR_FAMILY[actual]}' node for this model."
        )


def tile_arg(tile_size: int):
    """Node widget value -> engine ``tile``: 0 means automatic (whole image when it fits)."""
    tile_size = int(tile_size)
    if tile_size < 0:
        raise ValueError(f"tile_size must be 0 (auto) or positive, got {tile_size}")
    return None if tile_size == 0 else tile_size


def restore_batch(
    model,
    images: torch.Tensor,
    *,
    tile_size: int = 0,
    overlap: int = 32,
    precision: str = "fp32",
    device: Optional[torch.device] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    cancel: Optional[Callable[[], bool]] = None,
    oom_exceptions: Iterable[type] = (torch.OutOfMemoryError,),
    memory_budget: Optional[int] = None,
    is_oom: Optional[Callable[[BaseException], bool]] = None,
    preview: Optional[Callable[[Canvas], None]] = None,
) -> torch.Tensor:
    """Restore a BHWC batch; returns BHWC float in [0, 1] on the CPU.

    The engine takes the images one at a time (memory does not grow with a long video batch) and calls
    ``progress(done, total)`` once per tile over the whole batch, then ``preview(canvas)`` when given (the image
    being restored, see ``Canvas``); ``is_oom`` says which RuntimeErrors are out-of-memory errors.
    """
    if not isinstance(images, torch.Tensor):
        raise swinir.InputError(f"Expected an IMAGE batch [B, H, W, C] (a tensor), got a {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise swinir.InputError(f"Expected an IMAGE batch [B, H, W, C], got shape {tuple(images.shape)}")
    if images.shape[-1] not in (1, 2, 3, 4):
        # Checked here in ComfyUI's channels-last terms; the engine would name the NCHW layout it works in.
        raise swinir.InputError(
            f"An IMAGE has 1 to 4 channels in its last dimension [B, H, W, C], got shape {tuple(images.shape)}"
        )
    if precision not in PRECISIONS:
        raise swinir.InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    out = swinir.restore(
        model,
        images.movedim(-1, 1),
        tile=tile_arg(tile_size),
        overlap=int(overlap),
        precision=precision,
        device=device,
        progress=progress,
        cancel=cancel,
        oom_exceptions=tuple(oom_exceptions),
        memory_budget=memory_budget,
        is_oom=is_oom,
        preview=preview,
    )
    return out.movedim(1, -1)


def blend(original: torch.Tensor, restored: torch.Tensor, strength: float) -> torch.Tensor:
    """strength 1: the restored image; 0: the input; in between, a linear mix (same size, BHWC)."""
    strength = float(strength)
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be between 0 and 1, got {strength}")
    if strength >= 1.0:
        return restored
    original = original.to(device=restored.device, dtype=restored.dtype)
    if original.shape[-1] != restored.shape[-1]:
        original = original.expand(*restored.shape)
    return (original + strength * (restored - original)).clamp_(0.0, 1.0)


def output_size(height: int, width: int, native_scale: int, scale_by: float) -> tuple[int, int]:
    """Final size for ``scale_by`` (0 or the model's scale: native size)."""
    scale_by = float(scale_by)
    if scale_by < 0:
        raise ValueError(f"scale_by must be 0 (native) or positive, got {scale_by}")
    if scale_by == 0 or scale_by == native_scale:
        return height * native_scale, width * native_scale
    return max(1, round(height * scale_by)), max(1, round(width * scale_by))


def resize(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a BHWC batch with antialiased bicubic (a good downscale filter), clamped to [0, 1]."""
    if images.shape[1] == height and images.shape[2] == width:
        return images
    x = images.movedim(-1, 1)
    y = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return y.movedim(1, -1).clamp_(0.0, 1.0)


def size_text(size_bytes: int | None) -> str:
    return "size unknown" if size_bytes is None else f"{size_bytes / 1e6:.0f} MB"


def unique_names(*lists: Iterable[str]) -> list[str]:
    seen = set()
    out = []
    for names in lists:
        for n in names:
            if n not in seen:
                seen.add(n)
                out.append(n)
    return out


# --- Analyze Image and Auto Restore: measure each image, choose its pipeline, run it --------------------

import statistics  # noqa: E402
from collections import Counter  # noqa: E402
from typing import Mapping  # noqa: E402

from ..swinir.estimate import Degradation, Pipeline, estimate_degradation, recommend, step_label, upscale_passes  # noqa: E402
from ..swinir.estimate.recommend import STEP_TITLES  # noqa: E402


def analyse_images(images: torch.Tensor) -> list[Degradation]:
    """One Degradation per image of a BHWC batch."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    return estimate_degradation(images.movedim(-1, 1))


def batch_levels(found: list[Degradation]) -> tuple[float, int]:
    """(noise sigma, JPEG quality or 0) for a batch: the image's own for one image; for a batch (video frames),
    the median sigma and the most common quality (0 when most frames show no JPEG grid)."""
    sigma = float(statistics.median(d.noise_sigma for d in found))
    quality = Counter(d.jpeg_quality or 0 for d in found).most_common(1)[0][0]
    return round(sigma, 2), int(quality)


def analysis_text(found: list[Degradation]) -> str:
    if len(found) == 1:
        return found[0].description
    return "\n".join(f"image {i}/{len(found)}: {d.description}" for i, d in enumerate(found, 1))


def plan_images(found: list[Degradation], scale: float, available: list[str], threshold: float) -> list[Pipeline]:
    return [recommend(d, scale, available, threshold) for d in found]


def auto_restore(
    images: torch.Tensor,
    found: list[Degradation],
    pipelines: list[Pipeline],
    *,
    load: Callable[[str], object],
    run: Callable[[object, torch.Tensor, str], torch.Tensor],
    overrides: Mapping[str, object] | None = None,
) -> tuple[torch.Tensor, str]:
    """Run each image's pipeline (BHWC in, BHWC out at round(scale x size)); returns the images and the info text
    saying what was found, what ran and why.

    `load(name)` gives the model of a name in the pipelines; `run(model, image, family)` restores a 1-image BHWC
    batch; `overrides` maps 'jpeg' / 'denoise' / 'upscale' to a model the user connected, used for that task
    whenever the image needs it.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if images.ndim == 3:
        images = images.unsqueeze(0)
    scale = pipelines[0].scale if pipelines else 1.0
    height, width = max(1, round(images.shape[1] * scale)), max(1, round(images.shape[2] * scale))
    loaded: dict[str, object] = {}
    outputs, lines = [], []
    for i, (image, degradation, pipeline) in enumerate(zip(images, found, pipelines), 1):
        x = image.unsqueeze(0)
        head = f"image {i}/{len(found)}: " if len(found) > 1 else ""
        lines.append(f"{head}found {degradation.description}")
        chosen = {step.task: step for step in pipeline.steps}
        ran = 0
        for task in pipeline.wanted:
            if task in overrides:
                model, name, why = overrides[task], f"the connected {STEP_TITLES[task]} model", "connected by you"
            elif task in chosen:
                step = chosen[task]
                if step.model not in loaded:
                    loaded[step.model] = load(step.model)
                model, name, why = loaded[step.model], step.model, step.reason
            else:
                continue  # no model for it: the pipeline's note says so
            model_scale = int(model.config.scale)
            passes = upscale_passes(scale, model_scale) if task == "upscale" else 1
            for _ in range(passes):
                x = run(model, x, "sr" if task == "upscale" else task)
            ran += 1
            lines.append(f"  ran {step_label(task, model_scale, passes)} with {name}: {why}")
        if x.shape[1] != height or x.shape[2] != width:
            if "upscale" not in chosen and "upscale" not in overrides:
                lines.append(f"  resized to x{scale:g} with bicubic: no super-resolution model available")
            x = resize(x, height, width)
        replaced = {note for task, note in pipeline.unavailable if task in overrides}
        lines.extend(f"  note: {note}" for note in pipeline.notes if note not in replaced)
        if not ran:
            lines.append("  nothing run: " + ("no JPEG grid, noise at or below the threshold, scale 1"
                                            if not pipeline.wanted else "no model available for what it needs"))
        outputs.append(x.to(torch.float32).cpu())
    return torch.cat(outputs), "\n".join(lines)

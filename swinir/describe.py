"""Human-readable summaries of a model configuration (shown in the nodes and the command line)."""

from __future__ import annotations

from .config import SwinIRConfig
from .tasks import FAMILY_TITLES, TASK_TITLES, task_family

# Which node of the pack runs each task family.
NODE_FOR_FAMILY = {"sr": "SwinIR Upscale", "denoise": "SwinIR Denoise", "jpeg": "SwinIR JPEG Cleanup"}


def variant(config: SwinIRConfig) -> str:
    if config.embed_dim == 60 and len(config.depths) == 4:
        return "SwinIR-S"
    if config.embed_dim == 240 and len(config.depths) == 9:
        return "SwinIR-L"
    if config.embed_dim == 180 and len(config.depths) == 6:
        return "SwinIR-M"
    return f"SwinIR (dim {config.embed_dim}, {len(config.depths)} groups)"


def describe(config: SwinIRConfig) -> str:
    """One line, e.g. 'lightweight super-resolution x2 (SwinIR-S, window 8, RGB)'."""
    parts = [TASK_TITLES[config.task]]
    if config.is_sr:
        parts.append(f"x{config.scale}")
    if config.noise_level is not None:
        parts.append(f"sigma {config.noise_level}")
    if config.jpeg_quality is not None:
        parts.append(f"quality {config.jpeg_quality}")
    if config.level_range is not None:
        low, high = config.level_range
        parts[-1] += f", blind for {'sigma' if config.is_denoise else 'quality'} {low}-{high}"
    detail = f"{variant(config)}, window {config.window_size}, {'RGB' if config.in_chans == 3 else 'gray'}"
    return f"{' '.join(parts)} ({detail})"


def task_phrase(config: SwinIRConfig) -> str:
    """What the model does, for a message: 'JPEG-artifact removal model (color, quality 10)'."""
    family = task_family(config.task)
    if family == "sr":
        kind = TASK_TITLES[config.task].removesuffix(" " + FAMILY_TITLES["sr"])
        return f"{FAMILY_TITLES['sr']} model (x{config.scale}, {kind})"
    colour = "grayscale" if config.in_chans == 1 else "color"
    level = config.noise_level if family == "denoise" else config.jpeg_quality
    what = "noise level" if family == "denoise" else "quality"
    detail = colour if level is None else f"{colour}, {what} {level}"
    return f"{FAMILY_TITLES[family]} model ({detail})"

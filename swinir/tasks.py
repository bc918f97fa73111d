"""The task vocabulary of the core: every task a SwinIR model does, its title, and its family (the kind of node,
default model and training run that serves it). Everything else that names tasks asks this module."""

from __future__ import annotations

TASK_TITLES = {
    "classical_sr": "classical super-resolution",
    "lightweight_sr": "lightweight super-resolution",
    "real_sr": "real-world super-resolution",
    "gray_denoise": "grayscale denoising",
    "color_denoise": "color denoising",
    "gray_jpeg": "grayscale JPEG-artifact removal",
    "color_jpeg": "color JPEG-artifact removal",
}
TASKS = tuple(TASK_TITLES)

FAMILY_TITLES = {"sr": "super-resolution", "denoise": "denoising", "jpeg": "JPEG-artifact removal"}
FAMILIES = tuple(FAMILY_TITLES)


def task_family(task: str) -> str:
    """'sr', 'denoise' or 'jpeg' for a task of `TASKS`."""
    return task.rsplit("_", 1)[-1]

"""Turning what a user types (`--model`, a node's choice) into a checkpoint path, fetching catalogue files."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .catalogue import find_entry
from .download import ProgressCallback, default_models_dir, download_file
from .errors import SwinIRError, UnknownModelError

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
# The pack's own models, trained by this project (bench/RESULTS.md), one per task family.
DEFAULT_MODELS = {
    "sr": "swinir-s-x2-default.safetensors",
    "denoise": "swinir-s-denoise-default.safetensors",
    "jpeg": "swinir-s-jpeg-default.safetensors",
}
# What `--model` accepts for them.
DEFAULT_REFS = {"default": "sr", "default-sr": "sr", "default-denoise": "denoise", "default-jpeg": "jpeg"}


def default_model_path(family: str = "sr") -> Path:
    """The pack's own model of a task family: 'sr' (SwinIR-S x2), 'denoise' (blind, sigma 0-50) or 'jpeg'
    (blind, quality 10-90)."""
    if family not in DEFAULT_MODELS:
        raise SwinIRError(f"no default model for {family!r}; the defaults are {', '.join(DEFAULT_MODELS)}")
    return MODELS_DIR / DEFAULT_MODELS[family]


def default_model_paths() -> dict[str, Path]:
    """The defaults that are present, by task family."""
    return {family: path for family in DEFAULT_MODELS if (path := default_model_path(family)).is_file()}


def resolve_model(
    ref: str | None,
    models_dir: Path | None = None,
    *,
    download: bool = False,
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Path:
    """A path as is; 'default' (or None), 'default-denoise', 'default-jpeg' for the pack's models; a catalogue
    name or official file name in the models folder (the ComfyUI `models/swinir` folder, or `models_dir`),
    downloaded there first when `download` is set and it is missing."""
    if ref in (None, ""):
        ref = "default"
    if ref in DEFAULT_REFS:
        return default_model_path(DEFAULT_REFS[ref])
    path = Path(ref).expanduser()
    if path.is_file():
        return path
    try:
        entry = find_entry(ref)
    except UnknownModelError:
        raise SwinIRError(
            f"model {ref!r} is neither a file nor a catalogue name; see `python -m swinir download --list`"
        ) from None
    folder = models_dir or default_models_dir()
    candidate = folder / entry.file if folder else None
    if candidate is not None and candidate.is_file():
        return candidate
    if download and folder is not None:
        return download_file(entry, folder, progress=progress, cancel=cancel).path
    where = f" in {folder}" if folder else ""
    raise SwinIRError(
        f"model {entry.name} ({entry.file}) is not downloaded{where}; run "
        f"`python -m swinir download {entry.name}{'' if folder else ' --dir DIR'}` first"
        f"{'' if folder else ', then pass --models-dir DIR'}"
    )

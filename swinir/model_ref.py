"""Turning what a user types (`--model`, a node's choice) into a checkpoint path."""

from __future__ import annotations

from pathlib import Path

from .catalogue import find_entry
from .download import default_models_dir
from .errors import SwinIRError, UnknownModelError


def default_model_path() -> Path:
    """The pack's own SwinIR-S x2 model, trained by this project (see bench/RESULTS.md)."""
    return Path(__file__).resolve().parent.parent / "models" / "swinir-s-x2-default.safetensors"


def resolve_model(ref: str | None, models_dir: Path | None = None) -> Path:
    """A path as is; 'default' or None for the pack's model; a catalogue name or official file name in the models
    folder (the ComfyUI `models/swinir` folder, or `models_dir`)."""
    if ref in (None, "", "default"):
        return default_model_path()
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
    if candidate is None or not candidate.is_file():
        where = f" in {folder}" if folder else ""
        raise SwinIRError(
            f"model {entry.name} ({entry.file}) is not downloaded{where}; run "
            f"`python -m swinir download {entry.name}{'' if folder else ' --dir DIR'}` first"
            f"{'' if folder else ', then pass --models-dir DIR'}"
        )
    return candidate

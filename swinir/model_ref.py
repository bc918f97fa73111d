"""Turning what a user types (`--model`, a node's choice) into a checkpoint path, fetching catalogue files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .catalogue import CatalogueEntry, find_entry
from .download import ProgressCallback, default_models_dir, download_file, verify_local
from .errors import SwinIRError, UnknownModelError

MODELS_DIR = Path(__file__).resolve().parent / "models"
# The pack's own models, trained by this project (bench/RESULTS.md), one per task family.
DEFAULT_MODELS = {
    "sr": "swinir-s-x2-default.safetensors",
    "denoise": "swinir-s-denoise-default.safetensors",
    "jpeg": "swinir-s-jpeg-default.safetensors",
}
# What `--model` accepts for them.
DEFAULT_REFS = {"default": "sr", "default-sr": "sr", "default-denoise": "denoise", "default-jpeg": "jpeg"}
# How the node lists (and the recommendations made from them) name them: '(default) <file>'.
DEFAULT_PREFIX = "(default) "


def default_model_path(family: str = "sr") -> Path:
    """The pack's own model of a task family: 'sr' (SwinIR-S x2), 'denoise' (blind, sigma 0-50) or 'jpeg'
    (blind, quality 10-90)."""
    if family not in DEFAULT_MODELS:
        raise SwinIRError(f"no default model for {family!r}; the defaults are {', '.join(DEFAULT_MODELS)}")
    return MODELS_DIR / DEFAULT_MODELS[family]


def default_model_paths() -> dict[str, Path]:
    """The defaults that are present, by task family."""
    return {family: path for family in DEFAULT_MODELS if (path := default_model_path(family)).is_file()}


def default_choices() -> dict[str, Path]:
    """'(default) <file>' -> path, for the defaults that are present: their names in the node lists."""
    return {DEFAULT_PREFIX + path.name: path for path in default_model_paths().values()}


@dataclass(frozen=True)
class Located:
    """What a model name means: the file on disk (None when it is not there) and the official checkpoint it names
    (None for the pack's defaults and for other files)."""

    path: Path | None
    entry: CatalogueEntry | None


def locate_model(
    ref: str | None, folder: Path | None = None, *, find: Callable[[str], str | os.PathLike | None] | None = None
) -> Located:
    """The one reading of a model name, for the command line and the nodes alike: 'default' (or None), 'default-sr',
    'default-denoise', 'default-jpeg' and '(default) <file>' name the pack's models; a catalogue name or official file
    name is looked for with `find` (the nodes pass ComfyUI's model-folder lookup), else in `folder`; without `find`,
    any other name is a path."""
    if ref in (None, ""):
        ref = "default"
    if ref in DEFAULT_REFS:
        return Located(default_model_path(DEFAULT_REFS[ref]), None)
    defaults = default_choices()
    if ref in defaults:
        return Located(defaults[ref], None)
    try:
        entry = find_entry(ref)
    except UnknownModelError:
        entry = None
    if find is not None:
        found = find(ref)
        return Located(Path(found) if found else None, entry)
    path = Path(ref).expanduser()
    if path.is_file():
        return Located(path, None)
    if entry is not None and folder is not None and (folder / entry.file).is_file():
        return Located(folder / entry.file, entry)
    return Located(None, entry)


def resolve_model(
    ref: str | None,
    models_dir: Path | None = None,
    *,
    download: bool = False,
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Path:
    """The checkpoint a name means (`locate_model`): an official file in the models folder (the ComfyUI
    `models/swinir` folder, or `models_dir`) is checked against its digest, and downloaded there first when
    `download` is set and it is missing."""
    folder = models_dir or default_models_dir()
    found = locate_model(ref, folder)
    if found.path is not None:
        return verify_local(found.entry, found.path) if found.entry is not None else found.path
    entry = found.entry
    if entry is None:
        raise SwinIRError(
            f"model {ref!r} is neither a file nor a catalogue name; see `swinir download --list`"
        )
    if download and folder is not None:
        return download_file(entry, folder, progress=progress, cancel=cancel).path
    where = f" in {folder}" if folder else ""
    raise SwinIRError(
        f"model {entry.name} ({entry.file}) is not downloaded{where}; run "
        f"`swinir download {entry.name}{'' if folder else ' --dir DIR'}` first"
        f"{'' if folder else ', then pass --models-dir DIR'}"
    )

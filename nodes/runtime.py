"""ComfyUI integration: model folders, device and memory management, progress bar and interrupts.

The only place (with the node schemas beside it) that imports ComfyUI modules.
"""

from __future__ import annotations

import logging
import os

import comfy.model_management as mm
import comfy.utils
import folder_paths
import torch

from .. import swinir
from ..swinir import memory as swinir_memory
from ..swinir.engine import PRECISIONS
from . import work

log = logging.getLogger("ComfyUI-SwinIR")

MODEL_FOLDER = "swinir"
MODEL_EXTENSIONS = {".safetensors", ".pth", ".pt", ".ckpt"}


def register_model_folder() -> None:
    """models/swinir/ (plus whatever extra_model_paths.yaml names under 'swinir')."""
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))
    paths, exts = folder_paths.folder_names_and_paths[MODEL_FOLDER]
    # extra_model_paths.yaml is read before custom nodes load and registers the name with no extensions.
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, set(exts) | MODEL_EXTENSIONS)


def default_model_entry() -> str:
    return work.DEFAULT_MODEL_PREFIX + swinir.default_model_path().name


def model_choices() -> list[str]:
    """The loader's list: the pack's default model, then models/swinir/, then models/upscale_models/."""
    lists = [[default_model_entry()]]
    for folder in (MODEL_FOLDER, "upscale_models"):
        try:
            lists.append(folder_paths.get_filename_list(folder))
        except KeyError:
            pass
    return work.unique_names(*lists)


def resolve_model_path(name: str) -> str:
    if name == default_model_entry():
        return str(swinir.default_model_path())
    for folder in (MODEL_FOLDER, "upscale_models"):
        try:
            path = folder_paths.get_full_path(folder, name)
        except KeyError:
            path = None
        if path:
            return path
    raise FileNotFoundError(
        f"SwinIR model {name!r} was not found in models/{MODEL_FOLDER}/ or models/upscale_models/ "
        f"(download official models with: python -m swinir download NAME)"
    )


def model_fingerprint(name: str):
    try:
        path = resolve_model_path(name)
        st = os.stat(path)
        return (path, st.st_mtime_ns, st.st_size)
    except OSError:  # FileNotFoundError included: the load itself reports it
        return name


def load_model(name: str):
    path = resolve_model_path(name)
    # ComfyUI runs nodes under torch.inference_mode(); a model built there has inference-tensor parameters,
    # which later runs (and caches keyed on tensor versions) cannot use. Build it as a normal module.
    with torch.inference_mode(False), torch.no_grad():
        model = swinir.load_model(path)
    return model, swinir.describe(model.config)


def from_upscale_model(upscale_model):
    """A built-in UPSCALE_MODEL (spandrel descriptor) holding a SwinIR -> SWINIR_MODEL."""
    arch = getattr(getattr(upscale_model, "architecture", None), "id", None)
    inner = getattr(upscale_model, "model", None)
    if arch != "SwinIR" or not isinstance(inner, torch.nn.Module):
        what = arch or type(upscale_model).__name__
        raise work.WrongModelError(
            f"'SwinIR From Upscale Model' needs an upscale model of the SwinIR architecture; this one is "
            f"{what}. Use the built-in 'Upscale Image (using Model)' node for it."
        )
    with torch.inference_mode(False), torch.no_grad():
        state_dict = {k: v.detach().cpu().clone() for k, v in inner.state_dict().items()}
        model = swinir.model_from_state_dict(state_dict, name=None)
    return model, swinir.describe(model.config)


def _activation_estimate(model, images: torch.Tensor, tile_size: int, precision: str) -> int:
    """Bytes one forward pass needs: the whole image, or one tile, capped at 1024x1024 input pixels."""
    side = tile_size if tile_size > 0 else 1024
    pixels = min(side * side, images.shape[1] * images.shape[2])
    dtype = PRECISIONS.get(precision, torch.float32)
    return swinir_memory.estimate_bytes(model.config, pixels, dtype)


def run(model, images: torch.Tensor, family: str, *, tile_size: int, overlap: int, precision: str) -> torch.Tensor:
    """Run the engine on a BHWC batch inside ComfyUI's execution: device, memory, progress, interrupt."""
    work.check_task(model, family)
    device = mm.get_torch_device()
    required = mm.module_size(model) + _activation_estimate(model, images, int(tile_size), precision)
    required += images.nelement() * images.element_size()
    mm.free_memory(required, device)
    mm.soft_empty_cache()

    pbar = comfy.utils.ProgressBar(max(images.shape[0], 1))

    def progress(done: int, total: int) -> None:
        # The ProgressBar hook is ComfyUI's interrupt point: it raises InterruptProcessingException.
        pbar.update_absolute(done, total)

    try:
        model.to(device)
        return work.restore_batch(
            model,
            images,
            tile_size=tile_size,
            overlap=overlap,
            precision=precision,
            device=device,
            progress=progress,
            cancel=mm.processing_interrupted,
            oom_exceptions=(mm.OOM_EXCEPTION,),
        )
    except swinir.Cancelled:
        mm.throw_exception_if_processing_interrupted()
        raise mm.InterruptProcessingException()
    finally:
        model.to(mm.unet_offload_device())
        mm.soft_empty_cache()

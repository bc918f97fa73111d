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
from ..swinir.catalogue import find_entry, load_catalogue
from ..swinir.download import download_file
from ..swinir.engine import PRECISIONS
from ..swinir.errors import UnknownModelError
from ..swinir.model_ref import default_model_paths
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


def install_cache_hooks() -> None:
    """Empty the core's tensor caches whenever ComfyUI frees memory by unloading models (a new checkpoint, the
    Unload Models button / POST /free, or unload_all_models): ComfyUI cannot see those tensors, so it cannot free
    them itself. Idempotent."""
    original = mm.free_memory
    if getattr(original, "_swinir_hook", False):
        return

    def free_memory(memory_required, device, *args, **kwargs):
        unloaded = original(memory_required, device, *args, **kwargs)
        if unloaded or memory_required >= mm.get_free_memory(device):
            swinir.clear_caches(device)
        return unloaded

    free_memory._swinir_hook = True
    mm.free_memory = free_memory


def add_routes() -> None:
    """GET /swinir/cache: bytes the core's caches hold per device (for diagnostics and the tests)."""
    from aiohttp import web
    from server import PromptServer

    routes = PromptServer.instance.routes
    if getattr(routes, "_swinir_routes", False):
        return

    @routes.get("/swinir/cache")
    async def cache_bytes(request):
        return web.json_response({"bytes": swinir.cached_bytes()})

    routes._swinir_routes = True


def default_entries() -> dict[str, str]:
    """'(default) <file>' -> path, for the pack's own models that are present (x2 SR, blind denoise, blind JPEG)."""
    return {work.DEFAULT_MODEL_PREFIX + p.name: str(p) for p in default_model_paths().values()}



def _files_on_disk() -> list[str]:
    names: list[str] = []
    for folder in (MODEL_FOLDER, "upscale_models"):
        try:
            names += folder_paths.get_filename_list(folder)
        except KeyError:
            pass
    return names


def downloadable_entries() -> list:
    """Catalogue entries whose official file is in none of the model folders yet (fetched on first use)."""
    present = {os.path.basename(n) for n in _files_on_disk()}
    return [e for e in load_catalogue() if e.file not in present]


def model_choices() -> list[str]:
    """The loader's list: the pack's defaults, models/swinir/, models/upscale_models/, then the official files not
    on disk yet, under their official names, so a workflow naming one works before and after it is fetched."""
    return work.unique_names(
        default_entries(), _files_on_disk(), [e.file for e in downloadable_entries()]
    )


def downloads_tooltip() -> str:
    entries = downloadable_entries()
    if not entries:
        return "Every official model is on disk."
    listed = "; ".join(f"{e.file} ({work.size_text(e.size_bytes)})" for e in entries)
    return (
        f"Official models not on disk yet, downloaded into models/{MODEL_FOLDER}/ when first run "
        f"(from the official release, or $SWINIR_MODEL_MIRROR): {listed}."
    )


def _on_disk(name: str) -> str | None:
    defaults = default_entries()
    if name in defaults:
        return defaults[name]
    for folder in (MODEL_FOLDER, "upscale_models"):
        try:
            path = folder_paths.get_full_path(folder, name)
        except KeyError:
            path = None
        if path:
            return path
    return None


def download_folder() -> str:
    # ComfyUI's own models/swinir/, even when extra_model_paths.yaml lists other swinir folders first.
    return os.path.join(folder_paths.models_dir, MODEL_FOLDER)


def _download(entry) -> str:
    """Fetch a catalogue file into models/swinir/ with ComfyUI's progress bar; Cancel stops it, keeping nothing."""
    total_kib = max(1, (entry.size_bytes or 0) >> 10)
    pbar = comfy.utils.ProgressBar(total_kib)

    def progress(done: int, total: int | None) -> None:
        pbar.update_absolute(done >> 10, max(1, (total or 0) >> 10) if total else total_kib)

    log.info("downloading %s into %s", entry.file, download_folder())
    try:
        result = download_file(entry, download_folder(), progress=progress, cancel=mm.processing_interrupted)
    except swinir.Cancelled:
        mm.throw_exception_if_processing_interrupted()
        raise mm.InterruptProcessingException()
    return str(result.path)


def resolve_model_path(name: str, *, download: bool = False) -> str:
    """The file behind a loader choice; a catalogue file not on disk is fetched when `download` is set."""
    path = _on_disk(name)
    if path is not None:
        return path
    try:
        entry = find_entry(name)
    except UnknownModelError:
        entry = None
    if entry is not None and download:
        return _download(entry)
    if entry is not None:
        raise FileNotFoundError(f"SwinIR model {name!r} is not downloaded yet into models/{MODEL_FOLDER}/")
    raise FileNotFoundError(
        f"SwinIR model {name!r} was not found in models/{MODEL_FOLDER}/ or models/upscale_models/ and is not an "
        f"official SwinIR file name; put the file in models/{MODEL_FOLDER}/ or pick another model"
    )


def model_fingerprint(name: str):
    try:
        path = resolve_model_path(name)
        st = os.stat(path)
        return (path, st.st_mtime_ns, st.st_size)
    except OSError:  # FileNotFoundError included: the load itself reports it (or downloads the file)
        return name


def load_model(name: str):
    path = resolve_model_path(name, download=True)
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


def _activation_estimate(model, images: torch.Tensor, tile_size: int, precision: str, device: torch.device) -> int:
    """Bytes one forward pass needs: the whole image, or one tile, capped at 1024x1024 input pixels."""
    side = tile_size if tile_size > 0 else 1024
    pixels = min(side * side, images.shape[1] * images.shape[2])
    dtype = PRECISIONS.get(precision, torch.float32)
    return swinir_memory.estimate_bytes(model.config, pixels, dtype, device.type)


def run(model, images: torch.Tensor, family: str, *, tile_size: int, overlap: int, precision: str) -> torch.Tensor:
    """Run the engine on a BHWC batch inside ComfyUI's execution: device, memory, progress, interrupt."""
    work.check_task(model, family)
    device = mm.get_torch_device()
    required = mm.module_size(model) + _activation_estimate(model, images, int(tile_size), precision, device)
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


# --- Analyze Image and Auto Restore ---------------------------------------------------------------------------


def auto_available(allow_download: bool) -> list[str]:
    """Names Auto Restore may pick from: the pack's defaults, the files in models/swinir/ and models/upscale_models/,
    and, when downloads are allowed, every official file not on disk yet (load_model fetches it)."""
    names = list(default_entries())
    for folder in (MODEL_FOLDER, "upscale_models"):
        try:
            names += folder_paths.get_filename_list(folder)
        except KeyError:
            pass
    if allow_download:
        names += [entry.file for entry in downloadable_entries()]
    return work.unique_names(names)


def auto_restore(images, *, scale, threshold, allow_download, overrides, tile_size, overlap, precision):
    """Measure, choose and run per image (the work is in work.auto_restore); returns (images, info)."""
    found = work.analyse_images(images)
    pipelines = work.plan_images(found, float(scale), auto_available(bool(allow_download)), float(threshold))

    def run_step(model, image, family):
        return run(model, image, family, tile_size=tile_size, overlap=overlap, precision=precision)

    return work.auto_restore(images, found, pipelines, load=lambda name: load_model(name)[0], run=run_step,
                             overrides=overrides)

"""ComfyUI integration: model folders, ComfyUI's model manager, progress bar with previews, interrupts.

The only place (with the node schemas beside it) that imports ComfyUI modules. It is written against ComfyUI 0.3.75
and reads what newer releases add where they have it (docs/comfyui-compatibility.md lists each symbol and path).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import folder_paths
import torch
from comfy.cli_args import args as comfy_args
from comfy.patcher_extension import CallbacksMP
from PIL import Image

from .. import swinir
from ..swinir import cache as swinir_cache
from ..swinir import memory as swinir_memory
from ..swinir.catalogue import load_catalogue
from ..swinir.download import download_file, verify_local
from ..swinir.engine import Canvas
from ..swinir.precision import PRECISIONS
from ..swinir.model_ref import default_choices, locate_model
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


def add_routes() -> None:
    """GET /swinir/cache: bytes the core's caches hold per device, and how many of the pack's models ComfyUI's model
    manager holds loaded (for diagnostics and the tests)."""
    from aiohttp import web
    from server import PromptServer

    routes = PromptServer.instance.routes
    if getattr(routes, "_swinir_routes", False):
        return

    @routes.get("/swinir/cache")
    async def cache_bytes(request):
        return web.json_response({"bytes": swinir.cached_bytes(), "loaded_models": len(loaded_models())})

    routes._swinir_routes = True


def default_entries() -> dict[str, str]:
    """'(default) <file>' -> path, for the pack's own models that are present (x2 SR, blind denoise, blind JPEG)."""
    return {name: str(path) for name, path in default_choices().items()}


def _listing(folder: str) -> list[str]:
    """ComfyUI's file list of a model folder. Its cache stats every folder it listed before, so a folder removed
    while the server runs raises FileNotFoundError at every prompt's validation: that cache entry is dropped and
    the folders listed afresh (a removed folder lists as empty, one put back as it is)."""
    for _ in range(2):
        try:
            return folder_paths.get_filename_list(folder)
        except KeyError:
            return []
        except OSError:
            folder_paths.filename_list_cache.pop(folder, None)
    return []


def _files_on_disk() -> list[str]:
    names: list[str] = []
    for folder in (MODEL_FOLDER, "upscale_models"):
        names += _listing(folder)
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
    """The file of ComfyUI's model folders listed under `name` (the pack's defaults are the core's to resolve)."""
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
    # The core's reading of the name (the pack's defaults, official names), looked up in ComfyUI's model folders.
    found = locate_model(name, find=_on_disk)
    path, entry = found.path, found.entry
    if path is not None:
        # An official file is checked before it is loaded (against the digest recorded at its first download
        # when none is published); this also sweeps what killed downloads left beside it.
        return str(verify_local(entry, path) if download and entry is not None else path)
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


# --- ComfyUI's model manager ---------------------------------------------------------------------------------


def _patcher_class() -> type:
    """The patcher the release's own loaders use: CoreModelPatcher where it exists (the dynamic-VRAM patcher when
    ComfyUI enables it; main.py sets it after custom nodes are imported, so it is read at each load), else 0.3.75's
    ModelPatcher."""
    patchers = comfy.model_patcher
    return getattr(patchers, "CoreModelPatcher", patchers.ModelPatcher)


def _on_detach(patcher, unpatch_all: bool) -> None:
    """ComfyUI's model manager unloaded the model (Unload Models, POST /free, room for another model), or the
    patcher was dropped with its model: the core's caches of that device go with it. They are tensors ComfyUI
    cannot see, so it cannot free them itself; another model's load that leaves ours in place leaves them too."""
    device = patcher.load_device
    if unpatch_all:
        # A network not built from ComfyUI's ops may have been moved by hand (run below); back where the manager
        # keeps it unloaded.
        patcher.model.to(patcher.offload_device)
        swinir.clear_caches(device)
        return
    # Dropped (the patcher's __del__): the caches go with the last of the pack's models on that device. Off this
    # thread: a garbage collection can run __del__ while this thread holds the cache's lock.
    try:
        threading.Thread(target=_clear_if_unused, args=(device,), name="swinir-cache-clear", daemon=True).start()
    except RuntimeError:  # the interpreter is shutting down: nothing to keep
        pass


def _clear_if_unused(device: torch.device) -> None:
    if not any(p.load_device == device for p in loaded_models()):
        swinir.clear_caches(device)


def managed(model):
    """`model` with `model.patcher`, the handle through which ComfyUI's model manager loads and unloads it, on
    ComfyUI's load and offload devices (as the core's upscale-model loader does in newer releases; ComfyUI finds a
    node output's patcher under that name)."""
    patcher = _patcher_class()(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
    patcher.add_callback(CallbacksMP.ON_DETACH, _on_detach)
    model.patcher = patcher  # a plain attribute: nn.Module keeps non-module values out of the state dict
    return model


def loaded_models() -> list:
    """The pack's models that ComfyUI's model manager holds loaded now."""
    return [p for p in mm.loaded_models() if isinstance(getattr(p, "model", None), swinir.SwinIR)]


def load_model(name: str):
    path = resolve_model_path(name, download=True)
    # ComfyUI runs nodes under torch.inference_mode(); a model built there has inference-tensor parameters,
    # which later runs (and caches keyed on tensor versions) cannot use. Build it as a normal module.
    with torch.inference_mode(False), torch.no_grad():
        model = swinir.load_model(path)
    return managed(model), swinir.describe(model.config)


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
    return managed(model), swinir.describe(model.config)


def _activation_estimate(model, images: torch.Tensor, tile_size: int, precision: str, device: torch.device) -> int:
    """Bytes one forward pass needs: the whole image, or one tile, capped at 1024x1024 input pixels."""
    side = tile_size if tile_size > 0 else 1024
    pixels = min(side * side, images.shape[1] * images.shape[2])
    dtype = PRECISIONS.get(precision, torch.float32)
    return swinir_memory.estimate_bytes(model.config, pixels, dtype, device.type)


def _tile_budget(patcher, device: torch.device) -> int | None:
    """Bytes one forward pass may use on a GPU: what ComfyUI counts as free there (asked of the patcher where the
    release offers it: under dynamic VRAM, weights it can evict count as free), less --reserve-vram, the engine's
    share of that, less what the core's caches may hold. None on the CPU and MPS: the engine's own RAM rule."""
    if device.type in ("cpu", "mps"):
        return None
    query = getattr(patcher, "get_free_memory", None)
    free = query(device) if query is not None else mm.get_free_memory(device)
    room = free - mm.extra_reserved_memory()
    return max(0, int(room * swinir_memory.CUDA_SHARE) - swinir_cache.limit_for(device))


def is_oom() -> Callable[[BaseException], bool] | None:
    """ComfyUI's own out-of-memory test where the release has one (it also knows torch.AcceleratorError and clears
    the CUDA error it leaves); None leaves the engine's (OutOfMemoryError, AcceleratorError) to 0.3.75."""
    return getattr(mm, "is_oom", None)


PREVIEW_EVERY_S = 1.0  # at most one preview a second
# and at most 1 % of the run's time spent making them: the server's JPEG encoding costs about as much again, which
# keeps previews under 2 % of a run (bench/bench_comfy_nodes.py).
PREVIEW_SHARE = 0.01


class Previews:
    """The node's progress bar, with the image as far as it is restored, throttled by wall time and by cost.

    The engine calls `progress` after each tile, then `preview` with the canvas. Both go through ComfyUI's
    ProgressBar, whose hook is ComfyUI's interrupt point (it raises InterruptProcessingException): Cancel stops
    the run within a tile. A preview is ("JPEG", PIL image, max side), the form ComfyUI's server sends to the
    browser; the side is the server's --preview-size."""

    def __init__(self, pbar, max_side: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.pbar, self.max_side, self.clock = pbar, max_side, clock
        self.done = self.total = 0
        self.started = self.last = clock()
        self.spent = self.cost = 0.0  # seconds spent on previews, and on the last one
        self.sent = 0

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        self.pbar.update_absolute(done, total)

    def preview(self, canvas: Canvas) -> None:
        now = self.clock()
        if now - self.last < PREVIEW_EVERY_S or self.spent + self.cost > PREVIEW_SHARE * (now - self.started):
            return
        self.pbar.update_absolute(self.done, self.total, ("JPEG", preview_image(canvas, self.max_side), self.max_side))
        self.last = self.clock()
        self.cost = self.last - now
        self.spent += self.cost
        self.sent += 1


def preview_image(canvas: Canvas, max_side: int) -> Image.Image:
    pixels = canvas.image(max_side)
    pixels = pixels[:1] if pixels.shape[0] < 3 else pixels[:3]
    array = pixels.mul(255).round_().to(torch.uint8).permute(1, 2, 0).squeeze(-1).numpy()
    return Image.fromarray(array)


def run(model, images: torch.Tensor, family: str, *, tile_size: int, overlap: int, precision: str) -> torch.Tensor:
    """Run the engine on a BHWC batch inside ComfyUI's execution: the model manager, progress with previews,
    interrupt, every kind of out-of-memory error. The output is on ComfyUI's intermediate device."""
    work.check_task(model, family)
    patcher = getattr(model, "patcher", None) or managed(model).patcher
    device = patcher.load_device
    # Loaded by the model manager with what the run needs beside the weights (it counts those itself): our
    # calibrated estimate of one forward pass, plus the batch. Kept loaded after the run until the manager
    # needs the room; it frees memory for the load itself, the dynamic-VRAM way where the release has it.
    needed = _activation_estimate(model, images, int(tile_size), precision, device)
    needed += images.nelement() * images.element_size()
    mm.load_models_gpu([patcher], memory_required=needed, force_full_load=True)
    # The network is not built from ComfyUI's ops: dynamic VRAM stages only those, so the weights go over by hand
    # (a no-op once loaded); _on_detach takes them back.
    model.to(device)

    pbar = comfy.utils.ProgressBar(max(images.shape[0], 1))
    shown = Previews(pbar, int(getattr(comfy_args, "preview_size", 512) or 512))
    try:
        out = work.restore_batch(
            model,
            images,
            tile_size=tile_size,
            overlap=overlap,
            precision=precision,
            device=device,
            progress=shown.progress,
            preview=shown.preview,
            cancel=mm.processing_interrupted,
            oom_exceptions=(mm.OOM_EXCEPTION,),
            is_oom=is_oom(),
            memory_budget=_tile_budget(patcher, device),
        )
    except swinir.Cancelled:
        mm.throw_exception_if_processing_interrupted()
        raise mm.InterruptProcessingException()
    return out.to(mm.intermediate_device())


# --- Analyze Image and Auto Restore ---------------------------------------------------------------------------


def auto_available(allow_download: bool) -> list[str]:
    """Names Auto Restore may pick from: the pack's defaults, the files in models/swinir/ and models/upscale_models/,
    and, when downloads are allowed, every official file not on disk yet (load_model fetches it)."""
    downloadable = [entry.file for entry in downloadable_entries()] if allow_download else []
    return work.unique_names(default_entries(), _files_on_disk(), downloadable)


def auto_restore(images, *, scale, threshold, allow_download, overrides, tile_size, overlap, precision):
    """Measure, choose and run per image (the work is in work.auto_restore); returns (images, info)."""
    found = work.analyse_images(images)
    pipelines = work.plan_images(found, float(scale), auto_available(bool(allow_download)), float(threshold))

    def run_step(model, image, family):
        return run(model, image, family, tile_size=tile_size, overlap=overlap, precision=precision)

    out, info = work.auto_restore(images, found, pipelines, load=lambda name: load_model(name)[0], run=run_step,
                                  overrides=overrides)
    return out.to(mm.intermediate_device()), info

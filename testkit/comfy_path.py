"""Locating the ComfyUI checkout that scripts/get-comfyui.sh installs, for benchmarks that compare with it."""

from __future__ import annotations

import sys
from pathlib import Path

COMFYUI_DIR = Path(__file__).resolve().parents[1] / ".comfyui" / "ComfyUI"


def add_comfyui_to_path() -> None:
    """ComfyUI's checkout on the import path (it is no installable package), for `import comfy...`."""
    if not COMFYUI_DIR.is_dir():
        raise SystemExit(f"{COMFYUI_DIR} is missing: run `bash scripts/get-comfyui.sh` first")
    if str(COMFYUI_DIR) not in sys.path:
        sys.path.insert(0, str(COMFYUI_DIR))


def import_comfy_utils():
    """ComfyUI's `comfy.utils` (for `tiled_scale`, the built-in upscale node's tiler)."""
    add_comfyui_to_path()
    import comfy.utils

    return comfy.utils

"""Locating the ComfyUI checkout that scripts/get-comfyui.sh installs, for benchmarks that compare with it."""

from __future__ import annotations

import sys
from pathlib import Path

COMFYUI_DIR = Path(__file__).resolve().parents[1] / ".comfyui" / "ComfyUI"


def import_comfy_utils():
    """ComfyUI's `comfy.utils` (for `tiled_scale`, the built-in upscale node's tiler)."""
    if not COMFYUI_DIR.is_dir():
        raise SystemExit(f"{COMFYUI_DIR} is missing: run `bash scripts/get-comfyui.sh` first")
    sys.path.insert(0, str(COMFYUI_DIR))
    import comfy.utils

    return comfy.utils

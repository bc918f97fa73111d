"""The ComfyUI side of the pack.

- definitions.py: the node classes (V3 schemas) and the ComfyExtension; imports comfy_api.
- runtime.py: ComfyUI integration (model folders, device/memory, progress bar, interrupt); imports comfy.
- work.py: the image work (batching, task checks, blending, resizing); torch and the swinir core only.

This file imports nothing, so ``work`` can be used and tested without ComfyUI.
"""

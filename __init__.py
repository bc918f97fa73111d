"""ComfyUI-SwinIR: SwinIR image restoration (super-resolution, denoising, JPEG cleanup) as ComfyUI nodes.

ComfyUI imports this folder as a package (``custom_nodes.<folder>``). Only the V3 node API is exported
(``comfy_entrypoint``): a module that also exported V1 ``NODE_CLASS_MAPPINGS`` would have its V3 entry
point ignored. Nothing heavy happens at import time: no model is loaded until a node runs.

The core library lives in ``swinir/`` and works standalone (``import swinir`` from this folder); the
node code in ``nodes/`` imports it relatively, so the pack needs nothing on ``sys.path``.
"""

import os

# oneDNN (PyTorch's CPU convolutions) keeps compiled kernels for every input shape it has seen, up to 1,024, in memory
# no Python code can see: a ComfyUI server fed images of many sizes grows by about 2 MiB per prompt for that alone
# (the soak test, bench/RESULTS.md). 64 kernels still cover a few sizes of every model in use; the user's own
# setting wins. Read by oneDNN at its first convolution, so it is set here, before any prompt runs.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

WEB_DIRECTORY = "./web"  # node help pages: web/docs/<NodeId>.md


async def comfy_entrypoint():
    from .nodes.definitions import SwinIRExtension

    return SwinIRExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]

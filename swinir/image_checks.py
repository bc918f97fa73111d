"""The checks every image batch passes before the engine or the estimates spend work or memory on it."""

from __future__ import annotations

import torch

from . import memory
from .errors import InputError


def check_images(images: torch.Tensor, scale: int = 1) -> None:
    """Refuse what the engine cannot restore before any work or large allocation; `scale` sizes the result."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.layout != torch.strided or images.is_meta:
        what = "meta" if images.is_meta else str(images.layout).removeprefix("torch.")
        raise InputError(
            f"images must be a dense tensor holding data, got a {what} tensor; convert it first (.to_dense())"
        )
    if images.dim() != 4:
        raise InputError(f"images must be NCHW (4 dimensions), got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    if n == 0:
        raise InputError("the image batch is empty; connect at least one image")
    if h == 0 or w == 0:
        raise InputError(f"image size {w}x{h} has no pixels")
    if c not in (1, 2, 3, 4):
        raise InputError(
            f"images have {c} channels; expected 1 (gray), 3 (RGB) or with alpha 2/4 in NCHW layout "
            f"(got shape {tuple(images.shape)}; a channels-last NHWC tensor must be permuted first)"
        )
    if images.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise InputError(f"images must be float in [0, 1] (float16, bfloat16, float32 or float64), got {images.dtype}")
    # What cannot fit however it is tiled: the float32 result plus one image's accumulator and weights, on the CPU.
    # (A stride-0 view can claim a terabyte image without holding it.)
    needed = 4 * h * w * scale * scale * (n * c + c + 1)
    available = memory.available_ram()
    if needed > available:
        raise InputError(
            f"restoring {n} image(s) of {w}x{h} at x{scale} needs at least {needed / 2**30:.1f} GiB of memory for "
            f"the result, and {available / 2**30:.1f} GiB is available; downscale or split the image, or restore "
            "fewer images at once"
        )
    # In slices of at most 4M values: a whole-batch temporary (or the copy a reduction makes of a stride-0 view)
    # could need more memory than the images themselves.
    rows = max(1, (1 << 22) // (c * w))
    bad = sum(
        int((~torch.isfinite(images[i, :, top : top + rows])).sum()) for i in range(n) for top in range(0, h, rows)
    )
    if bad:
        raise InputError(f"images contain {bad} NaN or infinite values; fix the node or file that produced them")

"""Infer a SwinIRConfig from a state dict's key shapes, and the task and level from a file name.

Shapes decide the architecture completely. Three things are not in the shapes: `img_range`, the task family of a
scale-1 model (denoise or JPEG) and its noise level or JPEG quality. They come, in this order, from our
safetensors metadata, from an official file name (`005_colorDN_..._noise15.pth`, `006_CAR_..._jpeg10.pth`), or
from the official convention that the JPEG models are the only ones with window 7 and use img_range 255.
"""

from __future__ import annotations

import math
import re

import torch

from .config import SwinIRConfig
from .errors import CheckpointError

BLOCK0 = "layers.0.residual_group.blocks.0."
REQUIRED = ("conv_first.weight", BLOCK0 + "attn.relative_position_bias_table", BLOCK0 + "mlp.fc1.weight")


def seq_len(sd: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of consecutive numbered children `prefix.0`, `prefix.1`, ... in the state dict."""
    n = 0
    while any(k.startswith(f"{prefix}.{n}.") for k in sd):
        n += 1
    return n


def infer_upsampler(sd: dict[str, torch.Tensor]) -> str:
    if "conv_up1.weight" in sd:
        return "nearest+conv"
    if "conv_before_upsample.0.weight" in sd:
        return "pixelshuffle"
    if "upsample.0.weight" in sd:
        return "pixelshuffledirect"
    return ""


def infer_scale(sd: dict[str, torch.Tensor], upsampler: str, in_chans: int, num_feat: int) -> int:
    if upsampler == "nearest+conv":
        return 2 ** sum(1 for k in sd if re.fullmatch(r"conv_up\d+\.weight", k))
    if upsampler == "pixelshuffle":
        convs = [k for k in sd if re.fullmatch(r"upsample\.\d+\.weight", k)]
        if len(convs) == 1 and sd["upsample.0.weight"].shape[0] == 9 * num_feat:
            return 3
        return 2 ** len(convs)
    if upsampler == "pixelshuffledirect":
        return math.isqrt(sd["upsample.0.weight"].shape[0] // in_chans)
    return 1


def infer_window(sd: dict[str, torch.Tensor]) -> int:
    table = sd[BLOCK0 + "attn.relative_position_bias_table"].shape[0]
    return (math.isqrt(table) + 1) // 2


def level_from_name(name: str | None) -> tuple[str | None, int | None]:
    """('denoise' | 'jpeg' | None, level) from an official-style file name."""
    if not name:
        return None, None
    base = name.rsplit("/", 1)[-1].lower()
    if m := re.search(r"(?:noise|sigma)[_-]?(\d+)", base):
        return "denoise", int(m.group(1))
    if m := re.search(r"(?:jpeg|quality|_q)[_-]?(\d+)", base):
        return "jpeg", int(m.group(1))
    if "dn_" in base or "denois" in base:
        return "denoise", None
    if "car_" in base or "jpeg" in base:
        return "jpeg", None
    return None, None


def infer_task(upsampler: str, in_chans: int, window: int, name: str | None) -> tuple[str, int | None, int | None]:
    """(task, noise_level, jpeg_quality)."""
    if upsampler == "pixelshuffle":
        return "classical_sr", None, None
    if upsampler == "pixelshuffledirect":
        return "lightweight_sr", None, None
    if upsampler == "nearest+conv":
        return "real_sr", None, None
    family, level = level_from_name(name)
    if family is None:
        family = "jpeg" if window == 7 else "denoise"
    color = "gray" if in_chans == 1 else "color"
    if family == "jpeg":
        return f"{color}_jpeg", None, level
    return f"{color}_denoise", level, None


def infer_config(sd: dict[str, torch.Tensor], name: str | None = None) -> SwinIRConfig:
    """The full config of a SwinIR state dict (official key names); raises CheckpointError for anything else."""
    missing = [k for k in REQUIRED if k not in sd]
    if missing:
        raise CheckpointError(_not_swinir_message(sd, name, missing))
    if "absolute_pos_embed" in sd:
        raise CheckpointError(
            f"{name or 'checkpoint'}: uses an absolute position embedding (ape=True), which ties it to one input "
            "size; no official SwinIR model does this and it is not supported"
        )
    conv_first = sd["conv_first.weight"]
    embed_dim, in_chans = int(conv_first.shape[0]), int(conv_first.shape[1])
    if in_chans not in (1, 3):
        raise CheckpointError(f"{name or 'checkpoint'}: {in_chans} input channels; SwinIR models take 1 or 3")
    n_layers = seq_len(sd, "layers")
    depths = tuple(seq_len(sd, f"layers.{i}.residual_group.blocks") for i in range(n_layers))
    heads = tuple(
        int(sd[f"layers.{i}.residual_group.blocks.0.attn.relative_position_bias_table"].shape[1])
        for i in range(n_layers)
    )
    upsampler = infer_upsampler(sd)
    num_feat = int(sd["conv_before_upsample.0.weight"].shape[0]) if "conv_before_upsample.0.weight" in sd else 64
    window = infer_window(sd)
    task, noise, quality = infer_task(upsampler, in_chans, window, name)
    return SwinIRConfig(
        task=task,
        scale=infer_scale(sd, upsampler, in_chans, num_feat),
        in_chans=in_chans,
        window_size=window,
        # The official JPEG models (the only window-7 ones) were trained on [0, 255]; all others on [0, 1].
        img_range=255.0 if task.endswith("_jpeg") and window == 7 else 1.0,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=heads,
        mlp_ratio=sd[BLOCK0 + "mlp.fc1.weight"].shape[0] / embed_dim,
        upsampler=upsampler,
        resi_connection="1conv" if "conv_after_body.weight" in sd else "3conv",
        num_feat=num_feat,
        patch_norm="patch_embed.norm.weight" in sd,
        noise_level=noise,
        jpeg_quality=quality,
        source=name,
    )


def _not_swinir_message(sd: dict[str, torch.Tensor], name: str | None, missing: list[str]) -> str:
    keys = list(sd)
    what = "an empty state dict" if not keys else f"{len(keys)} tensors, e.g. {', '.join(keys[:3])}"
    hint = ""
    if any(k.startswith(("model.0.", "conv_body", "RRDB_trunk", "body.0.rdb")) for k in keys):
        hint = " These look like ESRGAN/RRDB weights: load them with ComfyUI's 'Load Upscale Model' instead."
    return (
        f"{name or 'checkpoint'} is not a SwinIR checkpoint: found {what}; missing {missing[0]}.{hint} "
        "Use an official SwinIR .pth or a file converted with `swinir convert`."
    )

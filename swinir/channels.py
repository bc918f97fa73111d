"""Matching an image's channels to a model's: gray models on RGB (luma or per channel), RGB models on gray, alpha.

Luma uses full-range BT.601 YCbCr (what JPEG and OpenCV's grayscale conversion use, and how the official gray
test sets were made from colour photos); the chroma planes are carried over, resized where the model upscales.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

GRAY_MODES = ("luma", "per_channel")


KR, KB = 0.299, 0.114


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = KR * r + (1 - KR - KB) * g + KB * b
    return torch.cat([y, (b - y) / (2 * (1 - KB)) + 0.5, (r - y) / (2 * (1 - KR)) + 0.5], dim=1)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    y, cb, cr = x[:, 0:1], x[:, 1:2] - 0.5, x[:, 2:3] - 0.5
    r = y + 2 * (1 - KR) * cr
    b = y + 2 * (1 - KB) * cb
    g = (y - KR * r - KB * b) / (1 - KR - KB)
    return torch.cat([r, g, b], dim=1)


def resize_planes(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Planes that the model does not see (chroma, alpha), brought to the output size."""
    if scale == 1:
        return x
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)


@dataclass(frozen=True)
class ChannelPlan:
    """How one NCHW image becomes model inputs and how the outputs become the result."""

    to_model: Callable[[torch.Tensor], list[torch.Tensor]]
    from_model: Callable[[torch.Tensor, list[torch.Tensor]], torch.Tensor]


def channel_plan(image_channels: int, model_channels: int, scale: int, gray_mode: str = "luma") -> ChannelPlan:
    if gray_mode not in GRAY_MODES:
        raise ValueError(f"gray_mode must be one of {GRAY_MODES}, not {gray_mode!r}")
    has_alpha = image_channels in (2, 4)
    color = image_channels - has_alpha

    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return (x[:, :color], x[:, color:]) if has_alpha else (x, None)

    def join(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
        return rgb if alpha is None else torch.cat([rgb, resize_planes(alpha, scale)], dim=1)

    if color == model_channels:
        return ChannelPlan(lambda x: [split(x)[0]], lambda x, outs: join(outs[0], split(x)[1]))
    if color == 1:  # RGB model, gray image: replicate, then average back to one channel.
        return ChannelPlan(
            lambda x: [split(x)[0].expand(-1, 3, -1, -1)],
            lambda x, outs: join(outs[0].mean(dim=1, keepdim=True), split(x)[1]),
        )
    if gray_mode == "per_channel":
        return ChannelPlan(
            lambda x: [split(x)[0][:, i : i + 1] for i in range(3)],
            lambda x, outs: join(torch.cat(outs, dim=1), split(x)[1]),
        )

    def luma_out(x: torch.Tensor, outs: list[torch.Tensor]) -> torch.Tensor:
        ycc = rgb_to_ycbcr(split(x)[0])
        chroma = resize_planes(ycc[:, 1:], scale)
        return join(ycbcr_to_rgb(torch.cat([outs[0], chroma], dim=1)), split(x)[1])

    return ChannelPlan(lambda x: [rgb_to_ycbcr(split(x)[0])[:, :1]], luma_out)

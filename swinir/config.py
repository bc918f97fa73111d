"""The SwinIR configuration: everything needed to build the network and to know what it is for."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .tasks import TASKS

UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
RESI_CONNECTIONS = ("1conv", "3conv")

# The official RGB mean of DIV2K that the network subtracts before the body (gray models use zero).
RGB_MEAN = (0.4488, 0.4371, 0.4040)


@dataclass(frozen=True)
class SwinIRConfig:
    """Architecture hyper-parameters (official argument names) plus what the model restores."""

    task: str = "classical_sr"
    scale: int = 2
    in_chans: int = 3
    window_size: int = 8
    img_range: float = 1.0
    embed_dim: int = 180
    depths: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    num_heads: tuple[int, ...] = (6, 6, 6, 6, 6, 6)
    mlp_ratio: float = 2.0
    upsampler: str = "pixelshuffle"
    resi_connection: str = "1conv"
    num_feat: int = 64
    patch_norm: bool = True
    noise_level: int | None = None
    jpeg_quality: int | None = None
    # A blind model's trained range: sigma (0-255 scale) for denoising, IJG quality for JPEG; None for one level.
    level_range: tuple[int, int] | None = None
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Tuples keep the config hashable and comparable whatever the caller passed.
        object.__setattr__(self, "depths", tuple(int(d) for d in self.depths))
        object.__setattr__(self, "num_heads", tuple(int(h) for h in self.num_heads))
        if self.level_range is not None:
            object.__setattr__(self, "level_range", tuple(int(v) for v in self.level_range))
            if len(self.level_range) != 2 or self.level_range[0] > self.level_range[1]:
                raise ValueError(f"level_range must be (low, high), got {self.level_range}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.upsampler not in UPSAMPLERS:
            raise ValueError(f"unknown upsampler {self.upsampler!r}; expected one of {UPSAMPLERS}")
        if self.resi_connection not in RESI_CONNECTIONS:
            raise ValueError(f"unknown resi_connection {self.resi_connection!r}")
        if len(self.depths) != len(self.num_heads):
            raise ValueError("depths and num_heads must have the same length")
        if any(self.embed_dim % h for h in self.num_heads):
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by every head count {self.num_heads}")

    @property
    def is_sr(self) -> bool:
        return self.task.endswith("_sr")

    @property
    def is_denoise(self) -> bool:
        return self.task.endswith("_denoise")

    @property
    def is_jpeg(self) -> bool:
        return self.task.endswith("_jpeg")

    @property
    def is_blind(self) -> bool:
        """Trained for a range of noise levels or JPEG qualities rather than one."""
        return self.level_range is not None

    def to_metadata(self) -> dict[str, str]:
        """Flat string metadata for a safetensors header."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                out[f.name] = ",".join(str(v) for v in value)
            else:
                out[f.name] = str(value)
        return out

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> SwinIRConfig:
        """Inverse of `to_metadata`; unknown keys are ignored so newer files still load."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in meta:
                continue
            raw = meta[f.name]
            try:
                kwargs[f.name] = _parse_field(f.name, raw)
            except ValueError:
                raise ValueError(f"{f.name}={raw!r} is not a valid value") from None
        return cls(**kwargs)


INT_FIELDS = ("scale", "in_chans", "window_size", "embed_dim", "num_feat", "noise_level", "jpeg_quality")


def _parse_field(name: str, raw: str) -> Any:
    if name in ("depths", "num_heads", "level_range"):
        return tuple(int(v) for v in raw.split(",") if v)
    if name in INT_FIELDS:
        return int(raw)
    if name in ("img_range", "mlp_ratio"):
        return float(raw)
    if name == "patch_norm":
        return raw == "True"
    return raw

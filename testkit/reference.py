"""Helpers shared by the core tests: the reference SwinIR (spandrel's port of the official network), random
weights that make every parameter matter, and checkpoint files in the official layout."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

# spandrel's faithful port of the official network; its state_dict is in the official layout (with buffers).
_REF_MODULE = importlib.import_module("spandrel.architectures.SwinIR.__arch.SwinIR")
RefSwinIR = _REF_MODULE.SwinIR

TOL = 1e-5


def build_reference(
    *,
    upscale: int,
    in_chans: int,
    img_size: int,
    window_size: int,
    img_range: float,
    depths: list[int],
    embed_dim: int,
    num_heads: list[int],
    mlp_ratio: float,
    upsampler: str,
    resi_connection: str,
    seed: int = 0,
) -> torch.nn.Module:
    """The reference network with random weights (every parameter replaced), in eval mode."""
    # Its truncated-normal init is slow and every value it writes is replaced below.
    original = _REF_MODULE.trunc_normal_
    _REF_MODULE.trunc_normal_ = lambda tensor, *args, **kwargs: tensor
    try:
        ref = RefSwinIR(
            upscale=upscale, in_chans=in_chans, img_size=img_size, window_size=window_size, img_range=img_range,
            depths=list(depths), embed_dim=embed_dim, num_heads=list(num_heads), mlp_ratio=mlp_ratio,
            upsampler=upsampler, resi_connection=resi_connection,
        )
    finally:
        _REF_MODULE.trunc_normal_ = original
    randomize_(ref, seed, img_range, upsampler)
    return ref.eval().requires_grad_(False)


def randomize_(model: torch.nn.Module, seed: int, img_range: float, upsampler: str) -> None:
    """Give every parameter a random value of a sensible magnitude.

    Relative-position bias tables get unit-scale values so window positions (and the shift mask) change attention;
    LayerNorm scales sit around 1; conv/linear weights are scaled by fan-in so activations stay O(1) through the
    deep body, with a larger gain in the reconstruction tail. For img_range 255 models the first conv maps [0, 255] to O(1) features and the last conv maps back,
    so the body's contribution is not swamped by the 255x input scale.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("relative_position_bias_table"):
                p.copy_(noise)
            elif p.dim() == 1 and name.endswith(".weight"):  # LayerNorm scale
                p.copy_(1 + 0.2 * noise)
            elif p.dim() == 1:  # biases and LayerNorm shifts
                p.copy_(0.05 * noise)
            else:
                gain = 0.7
                if name.startswith(("conv_before_upsample", "conv_up", "conv_hr")):
                    gain = 1.3  # the reconstruction tail's (leaky) ReLUs would otherwise shrink the output to ~bias
                if name == "conv_first.weight":
                    gain /= img_range
                if name == "conv_last.weight" and upsampler == "":
                    gain *= img_range
                p.copy_(noise * gain / p[0].numel() ** 0.5)


def reference_output(ref: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ref(x)


def our_output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def save_official(ref: torch.nn.Module, path: Path, key: str = "params") -> Path:
    """The file the authors publish: `{'params': state_dict}` (or `params_ema`), buffers included."""
    torch.save({key: ref.state_dict()}, path)
    return path


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shape {tuple(a.shape)} != {tuple(b.shape)}"
    return float((a - b).abs().max())


def small_reference(
    *,
    window: int = 8,
    upscale: int = 2,
    upsampler: str = "pixelshuffledirect",
    in_chans: int = 3,
    img_range: float = 1.0,
    embed_dim: int = 16,
    depths: tuple[int, ...] = (2, 2),
    num_heads: tuple[int, ...] = (2, 4),
    mlp_ratio: float = 2.0,
    resi_connection: str = "1conv",
    img_size: int | None = None,
    seed: int = 0,
) -> torch.nn.Module:
    """A fast reference network; img_size > window so its shifted blocks really shift."""
    return build_reference(
        upscale=upscale, in_chans=in_chans, img_size=img_size or 8 * window, window_size=window,
        img_range=img_range, depths=list(depths), embed_dim=embed_dim, num_heads=list(num_heads),
        mlp_ratio=mlp_ratio, upsampler=upsampler, resi_connection=resi_connection, seed=seed,
    )

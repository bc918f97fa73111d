"""Checkpoint files: safe reading of safetensors and official .pth files, loading, and writing our format.

A checkpoint never runs code: `.pth` files go through `torch.load(weights_only=True)` only, and the format is
sniffed from the bytes, not trusted from the extension.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import torch

from . import windows
from .config import SwinIRConfig
from .errors import CheckpointError
from .fileutil import atomic_target, sha256_of
from .infer import infer_config
from .network import SwinIR

FORMAT_TAG = "comfyui-swinir/1"
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
# Buffers the official network stores but that we recompute for every input size.
RECOMPUTED = ("attn_mask", "relative_position_index")
# What a training state may wrap the weights in. The official test script takes `params_ema` for real-world SR
# and `params` for every other task, so a file holding both is resolved by its upsampler (see `_pick_wrapped`).
WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model")


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); download it again")
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80":
        return "torch-legacy"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 0 < n < 100_000_000:
            return "safetensors"
    raise CheckpointError(
        f"{path}: not a checkpoint (neither safetensors nor a PyTorch file; first bytes {head[:8].hex()}); "
        "check that the download completed and that this is a model file"
    )


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    size = path.stat().st_size
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            raise CheckpointError(f"{path}: corrupt safetensors header; the file is damaged, download it again") from None
    try:
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (KeyError, TypeError, IndexError, ValueError, AttributeError):
        raise CheckpointError(f"{path}: corrupt safetensors header; the file is damaged, download it again") from None
    if 8 + n + max(ends, default=0) > size:
        raise CheckpointError(
            f"{path}: truncated safetensors file ({size} bytes, the header describes {8 + n + max(ends)}); "
            "download or convert it again"
        )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({e}); download or convert it again") from None


def _read_torch(path: Path) -> dict:
    try:
        # A file object, not the path: torch.load would hand a file named *.safetensors to safetensors itself.
        with open(path, "rb") as f:
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than tensors, which could run code "
            f"({str(e).splitlines()[-1][:200]}). Only plain weight files are accepted; convert it in a trusted "
            "environment with `python -m swinir convert`"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: corrupt or truncated PyTorch file ({str(e).splitlines()[0][:200]}); download it again"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    return obj


def _pick_wrapped(obj: dict) -> dict:
    if isinstance(obj.get("params"), dict) and isinstance(obj.get("params_ema"), dict):
        real_sr = any(k.removeprefix("module.") == "conv_up1.weight" for k in obj["params_ema"])
        return obj["params_ema"] if real_sr else obj["params"]
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def unwrap_state_dict(obj: dict, name: str) -> dict[str, torch.Tensor]:
    """The network's tensors: unwrap training wrappers, strip `module.`, drop buffers we recompute."""
    obj = _pick_wrapped(obj)
    sd: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{name}: entry {key!r} is a {type(value).__name__}, not a tensor; this is not a plain state dict"
            )
        key = key.removeprefix("module.")
        if key.rsplit(".", 1)[-1] in RECOMPUTED:
            continue
        sd[key] = value
    return sd


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, safetensors metadata) of a file; every failure is a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    kind = _sniff(path)
    if kind == "safetensors":
        raw, meta = _read_safetensors(path)
    else:
        raw, meta = _read_torch(path), {}
    return unwrap_state_dict(raw, path.name), meta


ARCH_FIELDS = (
    "scale", "in_chans", "window_size", "embed_dim", "depths", "num_heads", "mlp_ratio", "upsampler",
    "resi_connection", "num_feat", "patch_norm",
)


def config_from(sd: dict[str, torch.Tensor], meta: dict[str, str], name: str | None) -> SwinIRConfig:
    inferred = infer_config(sd, name)
    if meta.get("format") != FORMAT_TAG:
        return inferred
    try:
        stored = SwinIRConfig.from_metadata(meta)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{name}: malformed SwinIR metadata ({e}); convert the file again") from None
    if stored.is_sr != inferred.is_sr:
        raise CheckpointError(
            f"{name}: metadata says task {stored.task} but the weights are a {inferred.task} network; "
            "the file was edited or damaged, convert it again"
        )
    for field in ARCH_FIELDS:
        if getattr(stored, field) != getattr(inferred, field):
            raise CheckpointError(
                f"{name}: metadata says {field}={getattr(stored, field)} but the weights have "
                f"{getattr(inferred, field)}; the file was edited or damaged, convert it again"
            )
    return stored


def model_from_state_dict(
    sd: dict[str, torch.Tensor], name: str | None = None, meta: dict[str, str] | None = None
) -> SwinIR:
    """A ready (eval, no-grad) SwinIR from a state dict with official key names."""
    return _build(unwrap_state_dict(dict(sd), name or "state dict"), name, meta or {})


def _build(sd: dict[str, torch.Tensor], name: str | None, meta: dict[str, str]) -> SwinIR:
    """The model of an already unwrapped state dict."""
    config = config_from(sd, meta, name)
    model = SwinIR(config)
    try:
        result = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:
        raise CheckpointError(
            f"{name or 'state dict'}: weights do not fit the SwinIR layout inferred from them "
            f"({str(e).splitlines()[-1].strip()[:200]}); the file may be damaged"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{name or 'state dict'}: does not match the SwinIR layout inferred from it "
            f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}); the file may be damaged"
        )
    return model.eval().requires_grad_(False)


def load_model(path: str | os.PathLike) -> SwinIR:
    """Load any SwinIR checkpoint (official .pth or our safetensors) with its config inferred; see `infer.py`."""
    path = Path(path)
    sd, meta = read_checkpoint(path)  # already unwrapped
    return _build(sd, path.name, meta)


def interop_buffers(config: SwinIRConfig) -> dict[str, torch.Tensor]:
    """The buffers official-layout readers (spandrel, ComfyUI's Load Upscale Model) expect to find."""
    w = config.window_size
    size = 64 if w == 8 else 18 * w  # the official training patch sizes (64 for window 8, 126 for window 7)
    index = windows.relative_position_index(w).view(w * w, w * w)
    mask = windows.official_shift_mask(size, size, w, w // 2)
    out = {}
    for i, depth in enumerate(config.depths):
        for j in range(depth):
            prefix = f"layers.{i}.residual_group.blocks.{j}."
            out[prefix + "attn.relative_position_index"] = index.clone()
            if j % 2:
                out[prefix + "attn_mask"] = mask.clone()
    return out


def save_safetensors(
    model: SwinIR, path: str | os.PathLike, *, interop: bool = False, extra: dict[str, str] | None = None
) -> Path:
    """Write weights plus config metadata, atomically. `interop` keeps the recomputable buffers."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if interop:
        tensors.update(interop_buffers(model.config))
    meta = {"format": FORMAT_TAG, **model.config.to_metadata(), **(extra or {})}
    with atomic_target(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, interop: bool = False) -> Path:
    """Official (or any readable) checkpoint to our safetensors, recording the source name and sha256."""
    src = Path(src)
    model = load_model(src)
    return save_safetensors(
        model, dst, interop=interop, extra={"source_file": src.name, "source_sha256": sha256_of(src)}
    )
